/**
 * The sender process (forked by run.ts): sends into one system's room.
 *
 *   init {target} → ready; warmup {rooms} → every 200 ms a warm-up message into each of the next
 *   (up to) 100 rooms until stopWarmup → warmupStopped; run {rung, rate, durationMs, maxInFlight,
 *   rooms, closedLoop} → done {result}, as often as asked.
 *
 * A measured phase is open-loop: message `i` is due at `start + i / rate` whether or not earlier
 * sends have been answered (so a slow server cannot slow the offered load), up to `maxInFlight`
 * unanswered sends; past twice the planned duration nothing new is started. Closed-loop
 * (`closedLoop`): `maxInFlight` sends always in flight for `durationMs`, each started when one is
 * confirmed. Message `i` goes to room `i % rooms`.
 */
import { createSender, type Sender } from './clients';
import { encodeBody, now, remember, type FromSender, type SendResult, type ToSender } from './protocol';
import { parentChannel } from './worker';

const WARMUP_EVERY_MS = 200;
const WARMUP_ROOMS_PER_TICK = 100;
/** The most messages a closed-loop phase may send (sizes its arrays). */
const CLOSED_LOOP_MAX = 2_000_000;
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
        for (let k = 0; k < Math.min(WARMUP_ROOMS_PER_TICK, message.rooms); k++) {
          const i = n++;
          const sending = sender!.send(encodeBody({ k: 'w', i, t: now() }), i % message.rooms).catch(() => undefined);
          warmupsInFlight.add(sending);
          void sending.finally(() => warmupsInFlight.delete(sending));
        }
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
      post({ type: 'done', result: await run(sender!, message) });
      return;
  }
}

function run(sender: Sender, phase: Extract<ToSender, { type: 'run' }>): Promise<SendResult> {
  const { rung, durationMs, maxInFlight, rooms, closedLoop = false } = phase;
  const rate = closedLoop ? CLOSED_LOOP_MAX / (durationMs / 1000) : phase.rate;
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
        planned: closedLoop ? attempted : planned,
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
      sender.send(encodeBody({ k: 'm', r: rung, i, t }), i % rooms).then(
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
        if (closedLoop) topUp(); // the next one at once, not at the next tick
        else if (stopped() && inFlight === 0) finish();
      });
    };
    const stopped = () => attempted === planned || now() - start > (closedLoop ? 1 : 2) * durationMs;
    /** Starts every send that is due (all of them, up to `maxInFlight`, in a closed loop). */
    const topUp = () => {
      const due = Math.min(planned, Math.floor(((now() - start) * rate) / 1000) + 1);
      while (attempted < due && inFlight < maxInFlight && !stopped()) fire(attempted++);
      if (stopped() && inFlight === 0) finish();
    };
    const timer = setInterval(topUp, TICK_MS);
  });
}
