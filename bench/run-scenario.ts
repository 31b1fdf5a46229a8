import { availableParallelism } from 'node:os';
import { cpuTimes, machineCpu, monotonicUs, rssMb, settledRssMb, sleep } from './infra';
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
/** The unmeasured phase at the first rung's rate before the ladder. */
const SETTLE_MS = 5_000;

/** Prints a progress line on stderr (stdout carries only the JSON lines). */
export const say = (text: string) => console.error(`[bench] ${text}`);

/**
 * Runs one scenario against one running system: forks the sender and the load processes,
 * opens the subscribers, warms up until every subscriber has received a message, samples the
 * server's RSS, then runs the ladder's rungs on the same connections — each a measured phase,
 * a drain and one line — until a rung fails; then the closed-loop phase, if any. Every process it
 * forked is stopped before it returns or throws. `onLine` gets each line as it is made.
 */
export async function runScenario(
  system: RunningSystem,
  scenario: Scenario,
  processes: number,
  onLine: (line: ScenarioLine) => void,
  /** Called as each measured rung's sending begins (not the settle phase): work to run under its load. */
  duringRung?: (rate: number) => void,
): Promise<ScenarioLine[]> {
  const { target, server } = system;
  const sender = new Worker<ToSender, FromSender>(`${system.name} sender`, 'sender.ts');
  const counts = shares(scenario.connections, processes);
  const loads = counts.map(
    (count, n) => ({ count, offset: counts.slice(0, n).reduce((a, b) => a + b, 0), worker: new Worker<ToLoad, FromLoad>(`${system.name} load ${n + 1}`, 'load.ts') }),
  );
  const lines: ScenarioLine[] = [];
  try {
    sender.send({ type: 'init', target });
    await sender.expect('ready', 30_000);

    const rssBeforeMb = await settledRssMb(server.pid);
    say(`${system.name}/${scenario.name}: opening ${scenario.connections} subscribers from ${loads.length} processes`);
    for (const { worker, count, offset } of loads) worker.send({ type: 'connect', target, count, offset });
    await Promise.all(loads.map(({ worker }) => worker.expect('connected', CONNECT_TIMEOUT_MS)));

    sender.send({ type: 'warmup', rooms: scenario.rooms });
    await Promise.all(loads.map(({ worker }) => worker.expect('warm', WARM_TIMEOUT_MS)));
    sender.send({ type: 'stopWarmup' });
    await sender.expect('warmupStopped', 30_000);
    await sleep(1000); // let the last warm-up messages land
    const rssConnectedMb = rssMb(server.pid);

    const delivered = new Map<Worker<ToLoad, FromLoad>, number>();
    let rung = 0;
    for (const { worker } of loads) worker.on('progress', (m) => m.rung === rung && delivered.set(worker, m.delivered));
    const phase = async (rate: number, closedLoop: boolean, durationMs = scenario.durationMs, measured = true): Promise<ScenarioLine> => {
      rung++;
      delivered.clear();
      for (const { worker } of loads) worker.send({ type: 'rung', rung });
      let rssPeakMb = rssMb(server.pid);
      const sampler = setInterval(() => (rssPeakMb = Math.max(rssPeakMb, rssMb(server.pid))), 250);
      const cpuStart = cpuTimes(server.pid);
      const fromUs = monotonicUs();
      const machineStart = machineCpu();
      const started = Date.now();
      const what = closedLoop ? `${scenario.senders} sends in flight` : `${rate} msg/s`;
      say(`${system.name}/${scenario.name}: ${what} for ${durationMs / 1000} s`);
      sender.send({ type: 'run', rung, rate, durationMs, maxInFlight: closedLoop ? scenario.senders! : MAX_IN_FLIGHT, rooms: scenario.rooms, closedLoop });
      if (measured) duringRung?.(rate);
      const { result: send } = await sender.expect('done', 3 * durationMs + 30_000);

      const perMessage = scenario.connections / scenario.rooms;
      await drain(() => [...delivered.values()].reduce((a, b) => a + b, 0), send.ok * perMessage);
      const cpuEnd = cpuTimes(server.pid);
      const toUs = monotonicUs();
      const userUsed = cpuEnd.user - cpuStart.user;
      const cpuUsed = userUsed + cpuEnd.system - cpuStart.system;
      const cpuPct = (100 * cpuUsed) / ((Date.now() - started) / 1000);
      const machineEnd = machineCpu();
      const machineCpuPct = (100 * cpus * (machineEnd.busy - machineStart.busy)) / (machineEnd.total - machineStart.total);
      clearInterval(sampler);

      for (const { worker } of loads) worker.send({ type: 'collect' });
      const results: LoadResult[] = (await Promise.all(loads.map(({ worker }) => worker.expect('result', 30_000)))).map((m) => m.result);
      const name = `${scenario.name}@${closedLoop ? `${scenario.senders}senders` : `${rate}msgps`}`;
      return scenarioLine({ ...scenario, name }, system.name, send, results, perMessage, durationMs, {
        rssBeforeMb,
        rssConnectedMb,
        rssPeakMb,
        cpuSeconds: cpuUsed,
        userCpuSeconds: userUsed,
        cpuPct,
        machineCpuPct,
        problems: server.problems.splice(0),
        windowUs: [fromUs, toUs],
      });
    };
    // A cold server (JIT, first allocations) must not fail the first rung: settle at its rate (or,
    // without a ladder, in the closed loop), unmeasured.
    const settleMs = Math.min(SETTLE_MS, scenario.durationMs);
    const settle = await (scenario.rates.length ? phase(scenario.rates[0], false, settleMs, false) : phase(0, true, settleMs, false));
    say(`${system.name}/${scenario.name}: settled (p99 ${settle.p99Ms} ms, lost ${settle.lost}; not counted)`);
    for (const rate of scenario.rates) {
      const line = await phase(rate, false);
      lines.push(line);
      onLine(line);
      if (!passes(line, scenario)) break;
    }
    if (scenario.senders) {
      const line = await phase(0, true);
      lines.push(line);
      onLine(line);
    }
    for (const { worker } of loads) worker.send({ type: 'finish' });
    return lines;
  } finally {
    await Promise.all([sender.stop(), ...loads.map(({ worker }) => worker.stop())]);
  }
}

/** A rung passes with every offered message confirmed and delivered, and p99 under the scenario's limit. */
export function passes(line: ScenarioLine, scenario: Scenario): boolean {
  return line.lost === 0 && line.sendFailed === 0 && line.sendNotAttempted === 0 && line.delivered > 0 && line.p99Ms < scenario.p99LimitMs;
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
