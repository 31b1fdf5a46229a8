/**
 * The sender process (forked by run.ts): sends into one system's room.
 *
 *   init {target} → ready; warmup → a warm-up message every 200 ms until stopWarmup → warmupStopped;
 *   run {rate, durationMs, maxInFlight} → done {result}.
 *
 * The measured phase is open-loop: message `i` is due at `start + i / rate` whether or not earlier
 * sends have been answered (so a slow server cannot slow the offered load), up to `maxInFlight`
 * unanswered sends; past twice the planned duration nothing new is started.
 */
import { createSender, type Sender } from './clients';
import { encodeBody, now, remember, type FromSender, type SendResult, type ToSender } from './protocol';
import { parentChannel } from './worker';

const WARMUP_EVERY_MS = 200;
const TICK_MS = 2;

const post = parentChannel<FromSender>();
let sender: Sender | undefined;
let warmup: NodeJS.Timeout | undefined;
const warmupsInFlight = new Set<Promise<void>>();

process.on('message', (message: ToSender) => {
  handle(message).catch((err: Error) => post({ type: 'error', message: err.message }));
});

async function handle(message: ToSender): Promise<void> {
  switch (message.type) {
    case 'init':
      sender = await createSender(message.target);
      return post({ type: 'ready' });
    case 'warmup': {
      let n = 0;
      const sendWarmup = () => {
        const sending = sender!.send(encodeBody({ k: 'w', i: n++, t: now() })).catch(() => undefined);
        warmupsInFlight.add(sending);
        void sending.finally(() => warmupsInFlight.delete(sending));
      };
      sendWarmup();
      warmup = setInterval(sendWarmup, WARMUP_EVERY_MS);
      return;
    }
    case 'stopWarmup':
      clearInterval(warmup);
      await Promise.all(warmupsInFlight);
      return post({ type: 'warmupStopped' });
    case 'run':
      post({ type: 'done', result: await run(sender!, message.rate, message.durationMs, message.maxInFlight) });
      sender!.close();
      return;
  }
}

function run(sender: Sender, rate: number, durationMs: number, maxInFlight: number): Promise<SendResult> {
  const planned = Math.round((rate * durationMs) / 1000);
  const status = new Uint8Array(planned);
  const latencies: number[] = [];
  const errors: string[] = [];
  let attempted = 0;
  let inFlight = 0;
  const start = now();
  let lastSend = start;

  return new Promise((resolve) => {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      resolve({
        planned,
        attempted,
        ok: latencies.length,
        status,
        latencies: Float64Array.from(latencies),
        errors,
        firstSend: start,
        lastSend,
      });
    };
    const fire = (i: number) => {
      const t = now();
      lastSend = t;
      inFlight++;
      sender.send(encodeBody({ k: 'm', i, t })).then(
        () => {
          status[i] = 1;
          latencies.push(now() - t);
        },
        (err: Error) => {
          status[i] = 2;
          remember(errors, err.message);
        },
      ).finally(() => {
        inFlight--;
        if (stopped() && inFlight === 0) finish();
      });
    };
    const stopped = () => attempted === planned || now() - start > 2 * durationMs;
    const timer = setInterval(() => {
      const due = Math.min(planned, Math.floor(((now() - start) * rate) / 1000) + 1);
      while (attempted < due && inFlight < maxInFlight) fire(attempted++);
      if (stopped() && inFlight === 0) finish();
    }, TICK_MS);
  });
}
