/**
 * A load process (forked by run.ts): opens its share of subscriber connections to one system,
 * counts what they receive, and reports to the parent.
 *
 *   parent: connect {target, count} → here: connected, then warm (every subscriber got a warm-up
 *   message), progress every 250 ms; parent: rung → counting starts over; collect → result (the
 *   connections stay); finish → here: result, then it exits.
 */
import { openSubscriber, type Subscriber } from './clients';
import type { FromLoad, ToLoad } from './protocol';
import { Tally } from './tally';
import { parentChannel } from './worker';

/** Connections opened at once by one process (a burst of thousands of handshakes helps no one). */
const CONNECT_CONCURRENCY = 25;

const post = parentChannel<FromLoad>();
const subscribers: Subscriber[] = [];
let tally: Tally | undefined;

process.on('message', (message: ToLoad) => {
  if (message.type === 'connect') {
    connect(message.target, message.count, message.offset).catch((err: Error) => post({ type: 'error', message: err.message }));
  } else if (message.type === 'rung') {
    tally!.begin(message.rung);
  } else if (message.type === 'collect') {
    post({ type: 'result', result: tally!.result() });
  } else if (message.type === 'finish') {
    for (const subscriber of subscribers) subscriber.close();
    post({ type: 'result', result: tally!.result() });
    setTimeout(() => process.exit(0), 200);
  }
});

async function connect(target: Extract<ToLoad, { type: 'connect' }>['target'], count: number, offset: number): Promise<void> {
  const t = (tally = new Tally(count, () => post({ type: 'warm' })));
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      subscribers.push(
        await openSubscriber(target, offset + index, {
          message: t.subscriber(),
          errorResult: (m) => t.errorResult(m),
          dropped: (reason) => t.dropOne(reason),
        }),
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONNECT_CONCURRENCY, count) }, worker));
  post({ type: 'connected', connected: subscribers.length });
  setInterval(() => post({ type: 'progress', rung: t.rung, delivered: t.delivered }), 250).unref();
}
