/** One load shape, run the same way against every system. */
export interface Scenario {
  name: string;
  /** Subscriber connections, spread over the load processes. */
  connections: number;
  /** Messages per second the sender offers. */
  rate: number;
  durationMs: number;
}

/**
 * The scenarios of `npm run bench`. The first two offer 20,000 deliveries per second (subscribers
 * × rate): few connections and many messages, then many connections and few messages. The third
 * is a tenth of that, a load ours is meant to sustain, so its latencies compare delivery paths
 * rather than queues.
 * `BENCH_DURATION_S` changes the duration (default 10); `BENCH_ONLY=<name>` runs one scenario;
 * `BENCH_CUSTOM=<connections>x<rate>` (e.g. `10x500`) runs only that shape.
 */
export function scenarios(env: NodeJS.ProcessEnv = process.env): Scenario[] {
  const durationMs = Number(env.BENCH_DURATION_S ?? 10) * 1000;
  const all: Scenario[] = [
    { name: '100subs-200msgps', connections: 100, rate: 200, durationMs },
    { name: '1000subs-20msgps', connections: 1000, rate: 20, durationMs },
    { name: '100subs-20msgps', connections: 100, rate: 20, durationMs },
  ];
  const custom = /^(\d+)x(\d+)$/.exec(env.BENCH_CUSTOM ?? '');
  if (custom) {
    const [connections, rate] = [Number(custom[1]), Number(custom[2])];
    return [{ name: `${connections}subs-${rate}msgps`, connections, rate, durationMs }];
  }
  return env.BENCH_ONLY ? all.filter((s) => s.name === env.BENCH_ONLY) : all;
}

/** Load processes the subscribers are spread over (`BENCH_LOAD_PROCS`, default 4). */
export const loadProcesses = (env: NodeJS.ProcessEnv = process.env): number => Number(env.BENCH_LOAD_PROCS ?? 4);
