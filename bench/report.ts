import type { LoadResult, SendResult, SystemName } from './protocol';
import type { Scenario } from './scenarios';

/** Server-side measurements of one scenario run. */
export interface ServerSample {
  rssBeforeMb: number;
  rssConnectedMb: number;
  rssPeakMb: number;
  /** Server CPU time used during the measured phase and the drain. */
  cpuSeconds: number;
  /** Of which in user space (the rest is the kernel's: mostly socket writes). */
  userCpuSeconds: number;
  /** The same in % of one core. */
  cpuPct: number;
  /** The whole machine's CPU over the same time, in % of one core (200 = both of 2 cores busy). */
  machineCpuPct: number;
  /** Log lines at warn level or above during the run (ours logs at warn). */
  problems: string[];
  /** The measured phase and drain on the monotonic clock, in µs (`monotonicUs`). */
  windowUs: [number, number];
}

/** The JSON line printed for one system in one scenario. */
export interface ScenarioLine {
  scenario: string;
  system: SystemName;
  connections: number;
  sent: number;
  delivered: number;
  deliveredPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  lost: number;
  outOfOrder: number;
  rssMbPerConnection: number;
  // Beyond the required fields: what explains the numbers.
  sendFailed: number;
  sendNotAttempted: number;
  /** Confirmed sends per second of the measured phase. */
  sendsPerSec: number;
  sendP50Ms: number;
  sendP99Ms: number;
  serverCpuPct: number;
  serverCpuUsPerDelivery: number;
  /** Of which in user space. */
  serverUserUsPerDelivery: number;
  machineCpuPct: number;
  serverRssPeakMb: number;
  droppedSubscriptions: number;
  errors: string[];
  /**
   * The CPU figures' window (measured phase and drain) on the machine's monotonic clock in µs: the
   * clock of a `--cpu-prof` profile's timestamps, so `bench/profile-summary.ts` can read that part.
   */
  windowUs: [number, number];
}

/**
 * Combines what the sender, the load processes and the server sampling saw into one line.
 * Only confirmed sends count: `lost` is, over confirmed messages, recipients per message
 * (`perMessage`) × messages minus deliveries; `deliveredPerSec` is deliveries over the time from
 * the first send to the last receipt.
 */
export function scenarioLine(
  scenario: Pick<Scenario, 'name'>,
  system: SystemName,
  send: SendResult,
  loads: LoadResult[],
  perMessage: number,
  durationMs: number,
  server: ServerSample,
): ScenarioLine {
  const connections = loads.reduce((n, l) => n + l.connections, 0);
  let delivered = 0;
  for (let i = 0; i < send.planned; i++) {
    if (send.status[i] !== 1) continue;
    for (const load of loads) delivered += load.perIndex[i] ?? 0;
  }
  const latencies = concat(loads.map((l) => l.latencies));
  const lastReceipt = Math.max(...loads.map((l) => l.lastReceipt));
  const seconds = lastReceipt > send.firstSend ? (lastReceipt - send.firstSend) / 1000 : NaN;
  const errors = [...send.errors, ...loads.flatMap((l) => l.errors), ...server.problems.slice(0, 5)];
  return {
    scenario: scenario.name,
    system,
    connections,
    sent: send.ok,
    delivered,
    deliveredPerSec: round(delivered / seconds, 0),
    p50Ms: round(percentile(latencies, 0.5)),
    p99Ms: round(percentile(latencies, 0.99)),
    maxMs: round(percentile(latencies, 1)),
    lost: send.ok * perMessage - delivered,
    outOfOrder: loads.reduce((n, l) => n + l.outOfOrder, 0),
    rssMbPerConnection: round((server.rssConnectedMb - server.rssBeforeMb) / connections, 4),
    sendFailed: send.attempted - send.ok,
    sendNotAttempted: send.planned - send.attempted,
    sendsPerSec: round(send.ok / (durationMs / 1000), 0),
    sendP50Ms: round(percentile(send.latencies.slice().sort(), 0.5)),
    sendP99Ms: round(percentile(send.latencies.slice().sort(), 0.99)),
    serverCpuPct: round(server.cpuPct, 0),
    serverCpuUsPerDelivery: round((1e6 * server.cpuSeconds) / delivered, 1),
    serverUserUsPerDelivery: round((1e6 * server.userCpuSeconds) / delivered, 1),
    machineCpuPct: round(server.machineCpuPct, 0),
    serverRssPeakMb: round(server.rssPeakMb, 1),
    droppedSubscriptions: loads.reduce((n, l) => n + l.dropped + l.errorResults, 0),
    errors: [...new Set(errors)].slice(0, 10),
    windowUs: server.windowUs,
  };
}

/** A ladder's outcome for one system: the highest rate passing with every lower one passing too. */
export interface LadderSummary {
  scenario: string;
  system: SystemName;
  /** Highest passing rate (msg/s), 0 when the first rung failed. */
  saturation: number;
  /** At that rung: deliveries per second, server CPU per delivery, sender round trip p99. */
  deliveredPerSec: number;
  serverCpuUsPerDelivery: number;
  sendP99Ms: number;
  /** Idle RSS per subscribed connection (KB), after warm-up. */
  rssKbPerConnection: number;
  /** The first failing rung's rate and why, if one failed. */
  failedAt?: { rate: number; p99Ms: number; lost: number; sendFailed: number };
}

/** Summarises a ladder's lines (in rung order, with `rates` the offered rates). */
export function ladderSummary(scenario: string, system: SystemName, rates: number[], lines: ScenarioLine[], passed: (l: ScenarioLine) => boolean): LadderSummary {
  const at = lines.findIndex((l) => !passed(l));
  const passing = at < 0 ? lines : lines.slice(0, at);
  const best = passing[passing.length - 1];
  const failed = at < 0 ? undefined : lines[at];
  return {
    scenario,
    system,
    saturation: best ? rates[passing.length - 1] : 0,
    deliveredPerSec: best?.deliveredPerSec ?? 0,
    serverCpuUsPerDelivery: best?.serverCpuUsPerDelivery ?? NaN,
    sendP99Ms: best?.sendP99Ms ?? NaN,
    rssKbPerConnection: round((lines[0]?.rssMbPerConnection ?? NaN) * 1024, 1),
    ...(failed ? { failedAt: { rate: rates[at], p99Ms: failed.p99Ms, lost: failed.lost, sendFailed: failed.sendFailed } } : {}),
  };
}

/**
 * ours / reference for a ladder: saturation, CPU per delivery at the highest rate both passed
 * and at the first rung (the same load on both; the first rung exists even when one failed it),
 * and idle RSS per connection.
 */
export function ladderRatioLine(scenario: string, rates: number[], ours: ScenarioLine[], reference: ScenarioLine[], oursSummary: LadderSummary, refSummary: LadderSummary) {
  const ratio = (a: number, b: number) => round(a / b, 2);
  const common = Math.min(oursSummary.saturation, refSummary.saturation);
  const at = rates.indexOf(common);
  return {
    scenario,
    ratio: {
      saturation: ratio(oursSummary.saturation, refSummary.saturation),
      ...(at >= 0 && ours[at] && reference[at]
        ? { cpuPerDeliveryAtCommonRate: { rate: common, ratio: ratio(ours[at].serverCpuUsPerDelivery, reference[at].serverCpuUsPerDelivery) } }
        : {}),
      cpuPerDeliveryAtFirstRung: { rate: rates[0], ratio: ratio(ours[0]?.serverCpuUsPerDelivery ?? NaN, reference[0]?.serverCpuUsPerDelivery ?? NaN) },
      cpuPerDeliveryAtOwnSaturation: ratio(oursSummary.serverCpuUsPerDelivery, refSummary.serverCpuUsPerDelivery),
      rssPerConnection: ratio(oursSummary.rssKbPerConnection, refSummary.rssKbPerConnection),
    },
  };
}

/** ours / reference for each figure (> 1 means ours is higher: better for throughput, worse for the rest). */
export function ratioLine(ours: ScenarioLine, reference: ScenarioLine) {
  const ratio = (a: number, b: number) => round(a / b, 2);
  return {
    scenario: ours.scenario,
    ratio: {
      deliveredPerSec: ratio(ours.deliveredPerSec, reference.deliveredPerSec),
      p50Ms: ratio(ours.p50Ms, reference.p50Ms),
      p99Ms: ratio(ours.p99Ms, reference.p99Ms),
      rssPerConnection: ratio(ours.rssMbPerConnection, reference.rssMbPerConnection),
    },
  };
}

/** Nearest-rank percentile of sorted values (`q` = 1 is the maximum); NaN when empty. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The arrays joined and sorted ascending. */
function concat(parts: Float64Array[]): Float64Array {
  const all = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    all.set(part, at);
    at += part.length;
  }
  return all.sort();
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
