/**
 * `npm run bench`: the chat API (production mode, real PostgreSQL and Redis) against a textbook
 * Socket.IO server under the same load. Prints on stdout one JSON line per system and scenario,
 * then one ratio line (ours / reference) per scenario; progress goes to stderr.
 * See bench/README.md for what is measured and how.
 */
import { availableParallelism } from 'node:os';
import { cleanupAll, cleanupOnSignals, interrupted } from './cleanup';
import { startBackingServices } from './infra';
import { ratioLine, type ScenarioLine } from './report';
import { runScenario, say } from './run-scenario';
import type { SystemName } from './protocol';
import { loadProcesses, scenarios, type Scenario } from './scenarios';
import { startOurs, startReference, type RunningSystem } from './systems';

const NOTE =
  'ours persists every message in PostgreSQL (one transaction per send) and publishes it through Redis before ' +
  'fanning it out via graphql-ws, executing the subscription per subscriber; the Socket.IO reference keeps nothing, ' +
  'has no auth and no pub/sub, and io.emit()s one encoded packet to every socket.';

async function main(): Promise<void> {
  cleanupOnSignals();
  const processes = loadProcesses();
  const list = scenarios();
  const print = (line: object) => console.log(JSON.stringify(line));
  print({ note: NOTE, loadProcesses: processes, cpus: availableParallelism() });

  say('starting throwaway PostgreSQL and Redis');
  const backing = await startBackingServices();
  say(`PostgreSQL ${backing.databaseUrl}, Redis ${backing.redisUrl}`);
  const lines: ScenarioLine[] = [];
  // BENCH_SYSTEMS=ours (or socketio) runs one side only, for diagnosis; no ratio lines then.
  const only = process.env.BENCH_SYSTEMS;
  const systems: Array<readonly [SystemName, () => Promise<RunningSystem>]> = [
    ...(only && only !== 'ours' ? [] : [['ours', () => startOurs(backing)] as const]),
    ...(only && only !== 'socketio' ? [] : [['socketio', () => startReference()] as const]),
  ];
  for (const scenario of list) {
    // A fresh server per run, so RSS deltas and state start from the same point.
    for (const [name, start] of systems) {
      try {
        const line = await runOnce(start, scenario, processes);
        lines.push(line);
        print(line);
      } catch (err) {
        if (interrupted()) throw err;
        // One broken run must not hide the others: report it and go on.
        print({ scenario: scenario.name, system: name, error: (err as Error).message });
        process.exitCode = 1;
      }
    }
  }
  for (const scenario of list) {
    const ours = lines.find((l) => l.scenario === scenario.name && l.system === 'ours');
    const reference = lines.find((l) => l.scenario === scenario.name && l.system === 'socketio');
    if (ours && reference) print(ratioLine(ours, reference));
  }
}

/** Starts a fresh system, runs the scenario on it, stops it. */
async function runOnce(start: () => Promise<RunningSystem>, scenario: Scenario, processes: number): Promise<ScenarioLine> {
  const system = await start();
  try {
    return await runScenario(system, scenario, processes);
  } finally {
    await system.stop();
  }
}

main()
  .catch((err: Error) => {
    if (interrupted()) return;
    console.error(`[bench] failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanupAll());
