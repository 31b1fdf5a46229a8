// What a subscriber got against what was acknowledged: the per-scenario report of the fault suite.
import type { ChangeTally } from './change-tally';

/** A message as a send acknowledged it or a subscription delivered it. */
export interface Seen {
  id: string;
  seq: number;
}

/** One subscriber's account (API.md guarantees 1 and 2). */
export interface SubscriberTally {
  subscriber: string;
  /** Acknowledged messages after the subscriber's starting cursor: what it must receive. */
  expected: number;
  /** How many of those it received (at least once). */
  delivered: number;
  /** Acknowledged messages it never received. */
  lost: number;
  /** Deliveries of a message it had already received. */
  duplicated: number;
  /** First deliveries whose seq was not above every seq delivered before. */
  outOfOrder: number;
  /** Holes in the received seqs between the starting cursor and the highest seq received. */
  gaps: number;
  /** Messages received that no send acknowledged (a failed send must publish nothing). */
  unacknowledged: number;
  /** A few lost seqs, to start a diagnosis from. */
  lostSeqs?: number[];
  /** roomEvents only: MessageAdded events below a seq already added (allowed: roomEvents is in change order). */
  seqInversions?: number;
}

/**
 * Compares what `received` holds (in arrival order, possibly over several connections) with the
 * acknowledged sends, counting only those after `afterSeq` (the cursor the subscriber started from).
 */
export function tally(subscriber: string, acked: Iterable<Seen>, received: Seen[], afterSeq = 0): SubscriberTally {
  const expected = new Map<string, number>();
  for (const m of acked) if (m.seq > afterSeq) expected.set(m.id, m.seq);
  const seen = new Set<string>();
  const seqs = new Set<number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let unacknowledged = 0;
  let highest = afterSeq;
  for (const m of received) {
    if (seen.has(m.id)) {
      duplicated++;
      continue;
    }
    seen.add(m.id);
    seqs.add(m.seq);
    if (m.seq <= highest) outOfOrder++;
    highest = Math.max(highest, m.seq);
    if (!expected.has(m.id)) unacknowledged++;
  }
  let gaps = 0;
  for (let seq = afterSeq + 1; seq <= highest; seq++) if (!seqs.has(seq)) gaps++;
  const lostSeqs = [...expected].filter(([id]) => !seen.has(id)).map(([, seq]) => seq).sort((x, y) => x - y);
  return {
    subscriber,
    expected: expected.size,
    delivered: expected.size - lostSeqs.length,
    lost: lostSeqs.length,
    duplicated,
    outOfOrder,
    gaps,
    unacknowledged,
    ...(lostSeqs.length ? { lostSeqs: lostSeqs.slice(0, 20) } : {}),
  };
}

/** One scenario's line: totals over its subscribers, the details per subscriber, and scenario facts. */
export interface ScenarioReport {
  scenario: string;
  sent: number;
  subscribers: number;
  delivered: number;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  perSubscriber: SubscriberTally[];
  /** With change traffic: acknowledged changes, and the sums over the roomEvents subscribers. */
  changes?: number;
  changesDelivered?: number;
  changesLost?: number;
  changesDuplicated?: number;
  changesOutOfOrder?: number;
  viewMismatches?: number;
  perEventSubscriber?: ChangeTally[];
  wronglyRefused?: number;
  [fact: string]: unknown;
}

/** A scenario's changes: how many were acknowledged (by kind) and each roomEvents subscriber's tally. */
export interface ChangeReport {
  acked: number;
  byKind: Record<string, number>;
  tallies: ChangeTally[];
  /** Changes refused with CONFLICT ("deleted") on a message that is not deleted. */
  wronglyRefused: Array<{ op: string; messageId: string }>;
}

/**
 * Builds the scenario's report and prints it as one JSON line on stdout (so a run of the suite
 * leaves a machine-readable record next to jest's own output).
 */
export function report(scenario: string, sent: number, tallies: SubscriberTally[], facts: Record<string, unknown> = {}, changes?: ChangeReport): ScenarioReport {
  const sum = (key: 'delivered' | 'lost' | 'duplicated' | 'outOfOrder') => tallies.reduce((n, t) => n + t[key], 0);
  const sumChanges = (key: 'delivered' | 'lost' | 'duplicated' | 'outOfOrder' | 'viewMismatches') => changes!.tallies.reduce((n, t) => n + t[key], 0);
  const line: ScenarioReport = {
    scenario,
    sent,
    subscribers: tallies.length,
    delivered: sum('delivered'),
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    outOfOrder: sum('outOfOrder'),
    ...(changes
      ? {
          changes: changes.acked,
          changeKinds: changes.byKind,
          eventSubscribers: changes.tallies.length,
          changesDelivered: sumChanges('delivered'),
          changesLost: sumChanges('lost'),
          changesDuplicated: sumChanges('duplicated'),
          changesOutOfOrder: sumChanges('outOfOrder'),
          viewMismatches: sumChanges('viewMismatches'),
          wronglyRefused: changes.wronglyRefused.length,
        }
      : {}),
    ...facts,
    perSubscriber: tallies,
    ...(changes ? { perEventSubscriber: changes.tallies } : {}),
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  return line;
}

/** The assertion every scenario ends with: nothing lost, doubled, reordered, skipped or invented. */
export function expectClean(line: ScenarioReport): void {
  const bad = (t: SubscriberTally) => ({ subscriber: t.subscriber, lost: t.lost, duplicated: t.duplicated, outOfOrder: t.outOfOrder, gaps: t.gaps, unacknowledged: t.unacknowledged });
  const clean = (t: SubscriberTally) => ({ subscriber: t.subscriber, lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0, unacknowledged: 0 });
  expect(line.perSubscriber.map(bad)).toEqual(line.perSubscriber.map(clean));
  expect({ lost: line.lost, duplicated: line.duplicated, outOfOrder: line.outOfOrder }).toEqual({ lost: 0, duplicated: 0, outOfOrder: 0 });
}

/**
 * The assertion for the roomEvents subscribers (API.md guarantee 8): every acknowledged change
 * seen, no change number twice or out of order, nothing from before the start, each message first
 * as MessageAdded, and each subscriber's view of every message equal to the history.
 */
export function expectCleanChanges(line: ScenarioReport): void {
  const tallies = line.perEventSubscriber ?? [];
  const bad = (t: ChangeTally) => ({ subscriber: t.subscriber, lost: t.lost, duplicated: t.duplicated, outOfOrder: t.outOfOrder, beforeStart: t.beforeStart, wrongKind: t.wrongKind, viewMismatches: t.viewMismatches, examples: t.examples });
  const clean = (t: ChangeTally) => ({ subscriber: t.subscriber, lost: 0, duplicated: 0, outOfOrder: 0, beforeStart: 0, wrongKind: 0, viewMismatches: 0, examples: undefined });
  expect(tallies.length).toBeGreaterThan(0);
  expect(line.changes).toBeGreaterThan(0);
  expect(tallies.map(bad)).toEqual(tallies.map(clean));
  expect(line.wronglyRefused).toBe(0);
}
