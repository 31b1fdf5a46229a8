// within: a bound on a wait that a held process does not mistake for a late answer.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { within } from '../../src/within';

/** An echo server in another process: its answers come while this one is held. */
let echo: ChildProcess;
let client: Socket;

beforeAll(async () => {
  echo = spawn(process.execPath, ['-e', "const s = require('net').createServer((c) => c.pipe(c)).listen(0, '127.0.0.1', () => console.log(s.address().port))"], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((listening) => echo.stdout!.once('data', (data) => listening(Number(String(data).trim()))));
  client = connect(port, '127.0.0.1');
  await new Promise((connected) => client.once('connect', connected));
});

afterAll(() => {
  client.destroy();
  echo.kill();
});

/** Asks the echo server; resolves when the answer is read. */
const ask = () => new Promise<string>((answered) => (client.once('data', (data) => answered(String(data))), client.write('pong')));

it('settles with the promise when it settles in time, with the fallback when it does not', async () => {
  expect(await within(ask(), 1000, 'late')).toBe('pong');
  expect(await within(new Promise<string>(() => undefined), 50, 'late')).toBe('late');
});

it('settles with an answer that came in time but waited unread while this process was held past the bound', async () => {
  // The question goes out, then the process is held (in a phase after which timers run before
  // sockets are read) until well past the bound; the answer is waiting in the socket by then.
  let answer: Promise<string> | undefined;
  await new Promise<void>((held) =>
    setImmediate(() => {
      answer = within(ask(), 100, 'late');
      const until = Date.now() + 400;
      while (Date.now() < until);
      held();
    }),
  );
  expect(await answer!).toBe('pong');
});
