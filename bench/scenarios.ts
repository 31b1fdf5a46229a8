/** One load shape, run the same way against every system. */
export interface Scenario {
  name: string;
  /** Subscriber connections, spread over the load processes. */
  connections: number;
  /** Rooms: subscriber `j` listens to room `j % rooms`, message `i` goes to room `i % rooms`. */
  rooms: number;
  /**
   * Messages per second the sender offers, one rung after the other on the same connections.
   * The ladder stops at the first rung that fails (p99 ≥ `p99LimitMs`, or anything lost or failed).
   * Empty for a scenario that is only its closed-loop phase (`senders`).
   */
  rates: number[];
  /** Measured phase per rung. */
  durationMs: number;
  /** A rung passes with p99 below this and nothing lost. */
  p99LimitMs: number;
  /** After the ladder, one closed-loop phase: this many sends always in flight for `durationMs`. */
  senders?: number;
}

/** `BENCH_QUICK=1`: shorter rungs and a coarser ladder, to iterate in a few minutes. */
const quick = (env: NodeJS.ProcessEnv) => env.BENCH_QUICK === '1';

/**
 * The scenarios of `npm run bench`:
 * - `1000subs-ladder`, `5000subs-ladder`: one room, rates climbing until the system fails. At
 *   1,000 the rung passes with p99 < 100 ms (its highest passing rate, every lower one passing too,
 *   is the *saturation*); at 5,000 with p99 < 1 s (the *capacity*). The 5,000 ladder also gives
 *   the idle RSS per subscribed connection, and the sender's round trip during a 5,000 fan-out.
 * - `1000rooms-5subs`: 1,000 rooms of 5 subscribers, messages spread over the rooms; then on the
 *   same connections `@50senders`: 50 sends always in flight across the rooms, each delivered 5
 *   times (persisted sends/s while 5,000 subscribers receive them).
 * - `1000rooms-1sub`: only the closed-loop phase, `@50senders`: 50 sends always in flight across
 *   1,000 rooms with one subscriber each, so that every persisted send is also delivered and
 *   counted (the "50 concurrent senders across rooms", persisted sends/s).
 * - the three shapes of the first bench (one rung each).
 * `BENCH_DURATION_S` changes the rung duration (default 10, quick 4); `BENCH_ONLY=<name>` runs one
 * scenario; `BENCH_CUSTOM=<connections>x<rate>` (e.g. `10x500`) runs only that shape.
 */
export function scenarios(env: NodeJS.ProcessEnv = process.env): Scenario[] {
  const q = quick(env);
  const durationMs = Number(env.BENCH_DURATION_S ?? (q ? 4 : 10)) * 1000;
  const single = (name: string, connections: number, rate: number): Scenario => ({
    name, connections, rooms: 1, rates: [rate], durationMs, p99LimitMs: Infinity,
  });
  const all: Scenario[] = [
    {
      name: '1000subs-ladder',
      connections: 1000,
      rooms: 1,
      rates: q ? [5, 10, 20, 40, 60, 80, 100, 120, 140] : [5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 160],
      durationMs,
      p99LimitMs: 100,
    },
    {
      name: '5000subs-ladder',
      connections: 5000,
      rooms: 1,
      rates: q ? [1, 2, 4, 8, 12, 16, 20] : [1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24, 28],
      durationMs,
      p99LimitMs: 1000,
    },
    {
      name: '1000rooms-5subs',
      connections: 5000,
      rooms: 1000,
      rates: q ? [50, 200, 600, 1000] : [50, 100, 200, 400, 600, 800, 1000, 1500, 2000],
      durationMs,
      p99LimitMs: 100,
      senders: 50,
    },
    { name: '1000rooms-1sub', connections: 1000, rooms: 1000, rates: [], durationMs, p99LimitMs: 100, senders: 50 },
    ...(q ? [] : [single('100subs-200msgps', 100, 200), single('1000subs-20msgps', 1000, 20), single('100subs-20msgps', 100, 20)]),
  ];
  const custom = /^(\d+)x(\d+)$/.exec(env.BENCH_CUSTOM ?? '');
  if (custom) {
    const [connections, rate] = [Number(custom[1]), Number(custom[2])];
    return [single(`${connections}subs-${rate}msgps`, connections, rate)];
  }
  return env.BENCH_ONLY ? all.filter((s) => env.BENCH_ONLY!.split(',').includes(s.name)) : all;
}

/** Load processes the subscribers are spread over (`BENCH_LOAD_PROCS`, default 4). */
export const loadProcesses = (env: NodeJS.ProcessEnv = process.env): number => Number(env.BENCH_LOAD_PROCS ?? 4);

/**
 * `catchup-under-load`: 1,000 subscribers receive 20 msg/s in one room (a rung of 15 s, p99 < 100 ms
 * to pass, as at N = 1,000) while, `startAfterMs` into it, `readers` more subscribers resume
 * `messageAdded` `behind` messages back at once (a reconnect storm after a deploy): the rung's p99
 * is what the live subscribers saw meanwhile, the readers' line how long catching up took.
 */
export function catchUpUnderLoad(behind: number, env: NodeJS.ProcessEnv = process.env) {
  const scenario: Scenario = {
    name: 'catchup-under-load',
    connections: 1000,
    rooms: 1,
    rates: [Number(env.BENCH_CATCHUP_RATE ?? 20)],
    durationMs: Number(env.BENCH_CATCHUP_DURATION_S ?? 15) * 1000,
    p99LimitMs: 100,
  };
  return { scenario, behind, readers: Number(env.BENCH_CATCHUP_READERS ?? 20), startAfterMs: 1000 };
}
