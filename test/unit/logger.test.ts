// What the logs keep of an error (src/logger.ts): never the data a database error carries; a warning repeated with every send, once a second.
import { Writable } from 'node:stream';
import { QueryFailedError } from 'typeorm';
import { createLogger, warnAtMostEvery } from '../../src/logger';
import type { DataSource } from 'typeorm';
import { MembershipService } from '../../src/chat/membership-service';
import { quietPublisher } from '../../src/presence/publish';
import type { PubSub } from '../../src/pubsub';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: createLogger('info', stream), lines };
}

it("logs a failed statement's text, code and constraint, not its values nor the row PostgreSQL refused", () => {
  const driverError = Object.assign(new Error('duplicate key value violates unique constraint "users_username_key"'), {
    code: '23505',
    constraint: 'users_username_key',
    detail: 'Key (lower(username))=(ada_secret) already exists.',
    where: 'SQL statement "…" with ada_secret',
  });
  const err = new QueryFailedError('INSERT INTO "users"("username", "password_hash") VALUES ($1, $2)', ['ada_secret', '$argon2id$v=19$hash'], driverError);
  const { log, lines } = capture();
  log.error({ err, requestId: 'r1' }, 'unexpected error');
  const line = lines.join('');
  expect(line).not.toMatch(/ada_secret|argon2id/);
  const logged = JSON.parse(line).err;
  expect(logged.query).toBe('INSERT INTO "users"("username", "password_hash") VALUES ($1, $2)');
  expect(logged.driverError).toMatchObject({ code: '23505', constraint: 'users_username_key', message: expect.stringContaining('users_username_key') });
  expect(logged.stack).toContain('QueryFailedError');
});

it("logs which Redis command an error answers, not the command's arguments (AUTH's is the password)", () => {
  const { log, lines } = capture();
  const err = Object.assign(new Error('WRONGPASS invalid username-password pair'), { command: { name: 'auth', args: ['hunter2-secret'] } });
  log.error({ err }, 'failed');
  expect(lines.join('')).not.toContain('hunter2-secret');
  expect(JSON.parse(lines[0]).err.command).toEqual({ name: 'auth' });
});

it('logs other errors and plain messages as pino does', () => {
  const { log, lines } = capture();
  log.warn({ err: 'connect ECONNREFUSED' }, 'redis connection error');
  log.error({ err: Object.assign(new Error('boom'), { code: 'E1' }) }, 'failed');
  const [plain, error] = lines.map((l) => JSON.parse(l).err);
  expect(plain).toBe('connect ECONNREFUSED');
  expect(error).toMatchObject({ type: 'Error', message: 'boom', code: 'E1' });
});

it('logs a warning that repeats with every send once per window, saying how many it left out', () => {
  jest.useFakeTimers({ now: 0 });
  try {
    const { log, lines } = capture();
    const warn = warnAtMostEvery(log, 1000, 'publish failed');
    for (let i = 0; i < 50; i++) warn({ change: i }); // one window: the first only
    jest.setSystemTime(999);
    warn({ change: 50 });
    jest.setSystemTime(1000); // the next window: logged, with what the last one left out
    warn({ change: 51 });
    warn({ change: 52 });
    jest.setSystemTime(2500);
    warn({ change: 53 });
    expect(lines.map((line) => JSON.parse(line)).map(({ msg, change, suppressed }) => ({ msg, change, suppressed }))).toEqual([
      { msg: 'publish failed', change: 0, suppressed: undefined },
      { msg: 'publish failed', change: 51, suppressed: 50 },
      { msg: 'publish failed', change: 53, suppressed: 1 },
    ]);
  } finally {
    jest.useRealTimers();
  }
});

it('logs the failed publishes of ephemeral signals once per window too (a user with many rooms publishes to each at once)', async () => {
  const { log, lines } = capture();
  const down = { publish: () => Promise.reject(new Error('Connection is closed.')) } as unknown as PubSub;
  const publish = quietPublisher(down, log);
  await Promise.all(Array.from({ length: 12 }, (_, i) => publish(`room-${i}`, { kind: 'presence', userId: 'u', online: true })));
  expect(lines.map((line) => JSON.parse(line)).map(({ msg, roomId }) => ({ msg, roomId }))).toEqual([{ msg: 'could not publish an ephemeral signal', roomId: 'room-0' }]);
});

it('logs the failed publishes of membership changes once per window (Redis down fails every one; a burst of joins gave a line each)', async () => {
  const { log, lines } = capture();
  const down = { publish: () => Promise.reject(new Error('Connection is closed.')) } as unknown as PubSub;
  const memberships = new MembershipService({} as DataSource, down, log);
  for (let i = 0; i < 12; i++) memberships.tell(`room-${i}`, 'u', 'MEMBER', i + 1, { added: 0 });
  await new Promise((r) => setImmediate(r));
  const logged = lines.map((line) => JSON.parse(line));
  expect(logged.map(({ msg, roomId }) => ({ msg, roomId }))).toEqual([{ msg: 'publish failed; hubs notice removals by timer', roomId: 'room-0' }]);
});
