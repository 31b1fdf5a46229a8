import { availableParallelism } from 'node:os';
import { cpuSeconds, machineCpu, rssMb, sleep } from './infra';
import type { FromLoad, FromSender, LoadResult, ToLoad, ToSender } from './protocol';
import { scenarioLine, type ScenarioLine } from './report';
import type { Scenario } from './scenarios';
import type { RunningSystem } from './systems';
import { Worker } from './worker';

const cpus = availableParallelism();
const CONNECT_TIMEOUT_MS = 120_000;
const WARM_TIMEOUT_MS = 60_000;
/** After the last send: wait while deliveries still progress, at most this long. */
const DRAIN_MAX_MS = 30_000;
const DRAIN_STALL_MS = 5_000;
const MAX_IN_FLIGHT = 1000;

/** Prints a progress line on stderr (stdout carries only the JSON lines). */
export const say = (text: string) => console.error(`[bench] ${text}`);

/**
 * Runs one scenario against one running system: forks the sender and the load processes,
 * opens the subscribers, warms up until every subscriber has received a message, samples the
 * server's RSS, runs the measured phase, waits for deliveries to drain, and builds the line.
 * Every process it forked is stopped before it returns or throws.
 */
export async function runScenario(system: RunningSystem, scenario: Scenario, processes: number): Promise<ScenarioLine> {
  const { target, server } = system;
  const sender = new Worker<ToSender, FromSender>(`${system.name} sender`, 'sender.ts');
  const loads = shares(scenario.connections, processes).map(
    (count, n) => ({ count, worker: new Worker<ToLoad, FromLoad>(`${system.name} load ${n + 1}`, 'load.ts') }),
  );
  try {
    sender.send({ type: 'init', target });
    await sender.expect('ready', 30_000);

    const rssBeforeMb = rssMb(server.pid);
    say(`${system.name}/${scenario.name}: opening ${scenario.connections} subscribers from ${loads.length} processes`);
    for (const { worker, count } of loads) worker.send({ type: 'connect', target, count });
    await Promise.all(loads.map(({ worker }) => worker.expect('connected', CONNECT_TIMEOUT_MS)));

    sender.send({ type: 'warmup' });
    await Promise.all(loads.map(({ worker }) => worker.expect('warm', WARM_TIMEOUT_MS)));
    sender.send({ type: 'stopWarmup' });
    await sender.expect('warmupStopped', 30_000);
    await sleep(1000); // let the last warm-up messages land
    const rssConnectedMb = rssMb(server.pid);

    const delivered = new Map<Worker<ToLoad, FromLoad>, number>();
    for (const { worker } of loads) worker.on('progress', (m) => delivered.set(worker, m.delivered));
    let rssPeakMb = rssConnectedMb;
    const sampler = setInterval(() => (rssPeakMb = Math.max(rssPeakMb, rssMb(server.pid))), 250);
    const cpuStart = cpuSeconds(server.pid);
    const machineStart = machineCpu();
    const started = Date.now();
    say(`${system.name}/${scenario.name}: sending ${scenario.rate} msg/s for ${scenario.durationMs / 1000} s`);
    sender.send({ type: 'run', rate: scenario.rate, durationMs: scenario.durationMs, maxInFlight: MAX_IN_FLIGHT });
    const { result: send } = await sender.expect('done', 3 * scenario.durationMs + 30_000);

    await drain(() => [...delivered.values()].reduce((a, b) => a + b, 0), send.ok * scenario.connections);
    const cpuUsed = cpuSeconds(server.pid) - cpuStart;
    const cpuPct = (100 * cpuUsed) / ((Date.now() - started) / 1000);
    const machineEnd = machineCpu();
    const machineCpuPct = (100 * cpus * (machineEnd.busy - machineStart.busy)) / (machineEnd.total - machineStart.total);
    clearInterval(sampler);

    for (const { worker } of loads) worker.send({ type: 'finish' });
    const results: LoadResult[] = (await Promise.all(loads.map(({ worker }) => worker.expect('result', 30_000)))).map((m) => m.result);
    return scenarioLine(scenario, system.name, send, results, {
      rssBeforeMb,
      rssConnectedMb,
      rssPeakMb,
      cpuSeconds: cpuUsed,
      cpuPct,
      machineCpuPct,
      problems: server.problems.splice(0),
    });
  } finally {
    await Promise.all([sender.stop(), ...loads.map(({ worker }) => worker.stop())]);
  }
}

/** Waits until `total()` reaches `expected`, or stops growing for a while, or the maximum wait. */
async function drain(total: () => number, expected: number): Promise<void> {
  const deadline = Date.now() + DRAIN_MAX_MS;
  let last = -1;
  let lastChange = Date.now();
  while (total() < expected && Date.now() < deadline && Date.now() - lastChange < DRAIN_STALL_MS) {
    if (total() !== last) {
      last = total();
      lastChange = Date.now();
    }
    await sleep(100);
  }
  await sleep(300); // one more progress report
}

/** `total` split into `parts` near-equal positive shares. */
function shares(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}
