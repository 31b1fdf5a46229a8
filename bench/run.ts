/**
 * `npm run bench`: the chat API (production mode, real PostgreSQL and Redis) against a textbook
 * Socket.IO server under the same load. Prints on stdout one JSON line per system and scenario,
 * then one ratio line (ours / reference) per scenario; progress goes to stderr.
 * See bench/README.md for what is measured and how.
 */
import { availableParallelism } from 'node:os';
import { cleanupAll, cleanupOnSignals, interrupted } from './cleanup';
import { sleep, startBackingServices } from './infra';
import { catchUp, writeBacklog } from './catchup';
import { ladderRatioLine, ladderSummary, ratioLine, round, type LadderSummary, type ScenarioLine } from './report';
import { passes, runScenario, say } from './run-scenario';
import type { SystemName } from './protocol';
import { catchUpUnderLoad, loadProcesses, scenarios } from './scenarios';
import { startOurs, startReference, type RunningSystem, type Setup } from './systems';

const NOTE =
  'ours persists every message in PostgreSQL (one transaction per send) and publishes it through Redis before ' +
  'fanning it out over graphql-ws (each event executed and serialised once per operation, then one next frame per ' +
  'subscriber with its id spliced in); the Socket.IO reference keeps nothing, ' +
  'has no auth and no pub/sub, and io.emit()s one encoded packet to every socket.';

async function main(): Promise<void> {
  cleanupOnSignals();
  const processes = loadProcesses();
  const list = scenarios();
  const print = (line: object) => console.log(JSON.stringify(line));
  print({ note: NOTE, loadProcesses: processes, cpus: availableParallelism(), quick: process.env.BENCH_QUICK === '1' });

  say('starting throwaway PostgreSQL and Redis');
  const backing = await startBackingServices();
  say(`PostgreSQL ${backing.databaseUrl}, Redis ${backing.redisUrl}`);
  // BENCH_SYSTEMS=ours (or socketio) runs one side only, for diagnosis; no ratio lines then.
  const only = process.env.BENCH_SYSTEMS;
  const systems: Array<readonly [SystemName, (setup: Setup) => Promise<RunningSystem>]> = [
    ...(only && only !== 'ours' ? [] : [['ours', (setup: Setup) => startOurs(backing, setup)] as const]),
    ...(only && only !== 'socketio' ? [] : [['socketio', (setup: Setup) => startReference(setup)] as const]),
  ];
  const ratios: object[] = [];
  for (const scenario of list) {
    const lines = new Map<SystemName, ScenarioLine[]>();
    const summaries = new Map<SystemName, LadderSummary>();
    // A fresh server per scenario, so RSS deltas and state start from the same point.
    for (const [name, start] of systems) {
      try {
        const system = await start({ rooms: scenario.rooms, connections: scenario.connections });
        try {
          lines.set(name, await runScenario(system, scenario, processes, print));
        } finally {
          await system.stop();
        }
        const ladder = lines.get(name)!.slice(0, scenario.rates.length);
        if (scenario.rates.length > 1) {
          const summary = ladderSummary(scenario.name, name, scenario.rates, ladder, (l) => passes(l, scenario));
          summaries.set(name, summary);
          print({ summary });
        }
      } catch (err) {
        if (interrupted()) throw err;
        // One broken run must not hide the others: report it and go on.
        print({ scenario: scenario.name, system: name, error: (err as Error).message });
        process.exitCode = 1;
      }
    }
    const [ours, reference] = [lines.get('ours'), lines.get('socketio')];
    if (!ours || !reference) continue;
    const [os, rs] = [summaries.get('ours'), summaries.get('socketio')];
    if (os && rs) ratios.push(ladderRatioLine(scenario.name, scenario.rates, ours, reference, os, rs));
    else if (ours[0] && reference[0]) ratios.push(ratioLine(ours[0], reference[0]));
    const [oc, rc] = [ours.find((l) => l.scenario.endsWith('senders')), reference.find((l) => l.scenario.endsWith('senders'))];
    if (oc && rc) {
      ratios.push({ scenario: oc.scenario, ratio: { sendsPerSec: round(oc.sendsPerSec / rc.sendsPerSec, 2), sendP99Ms: round(oc.sendP99Ms / rc.sendP99Ms, 2) }, ours: oc.sendsPerSec, reference: rc.sendsPerSec });
    }
  }
  if (!only || only === 'ours') {
    const behind = Number(process.env.BENCH_CATCHUP ?? 10_000);
    const wanted = (name: string) => !process.env.BENCH_ONLY || process.env.BENCH_ONLY.split(',').includes(name);
    const oursOnly = async (name: string, setup: Setup, run: (system: RunningSystem) => Promise<void>) => {
      try {
        const system = await startOurs(backing, setup);
        try {
          await run(system);
        } finally {
          await system.stop();
        }
      } catch (err) {
        if (interrupted()) throw err;
        print({ scenario: name, system: 'ours', error: (err as Error).message });
        process.exitCode = 1;
      }
    };
    if (wanted(`catchup-${behind}`)) {
      await oursOnly(`catchup-${behind}`, { rooms: 1, connections: 0 }, async (system) => {
        say(`ours/catchup-${behind}: writing the backlog, then resuming one subscriber`);
        print(await catchUp(system, await writeBacklog(system, behind)));
      });
    }
    const load = catchUpUnderLoad(behind);
    if (wanted(load.scenario.name)) {
      await oursOnly(load.scenario.name, { rooms: 1, connections: load.scenario.connections }, async (system) => {
        say(`ours/${load.scenario.name}: writing the backlog; ${load.readers} subscribers resume ${load.startAfterMs / 1000} s into the live rung`);
        const backlog = await writeBacklog(system, behind);
        const name = `${load.scenario.name}@readers`;
        let readers = Promise.resolve();
        await runScenario(system, load.scenario, processes, print, () => {
          // Handled at once: a reader failing while the rung still runs must not end the bench.
          readers = sleep(load.startAfterMs)
            .then(async () => print(await catchUp(system, backlog, load.readers, name)))
            .catch((err: Error) => {
              print({ scenario: name, system: 'ours', error: err.message });
              process.exitCode = 1;
            });
        });
        await readers;
      });
    }
  }
  for (const line of ratios) print(line);
}

main()
  .catch((err: Error) => {
    if (interrupted()) return;
    console.error(`[bench] failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  })
  .finally(() => cleanupAll());
