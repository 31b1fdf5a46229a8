// What a subscriber got against what was acknowledged: the per-scenario report of the fault suite.

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
  [fact: string]: unknown;
}

/**
 * Builds the scenario's report and prints it as one JSON line on stdout (so a run of the suite
 * leaves a machine-readable record next to jest's own output).
 */
export function report(scenario: string, sent: number, tallies: SubscriberTally[], facts: Record<string, unknown> = {}): ScenarioReport {
  const sum = (key: 'delivered' | 'lost' | 'duplicated' | 'outOfOrder') => tallies.reduce((n, t) => n + t[key], 0);
  const line: ScenarioReport = {
    scenario,
    sent,
    subscribers: tallies.length,
    delivered: sum('delivered'),
    lost: sum('lost'),
    duplicated: sum('duplicated'),
    outOfOrder: sum('outOfOrder'),
    ...facts,
    perSubscriber: tallies,
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
