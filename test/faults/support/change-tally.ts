// What a roomEvents subscriber got against the acknowledged changes (API.md guarantee 8): the order
// of its event cursors, every acknowledged change seen (the same state or a later one), nothing
// from before its start, each message first as MessageAdded, and its final view against the history.
import { sql } from './backing';
import type { ChangeTraffic } from './changes';
import type { EventSubscriber } from './events';
import { historyAs, levelOf, type AckedChange, type MessageState } from './message-state';
import { tally, type ChangeReport, type Seen, type SubscriberTally } from './tally';

/** One roomEvents subscriber's account of the changes. */
export interface ChangeTally {
  subscriber: string;
  /** Acknowledged changes it must have seen (all of them: every change in these scenarios follows its start). */
  expected: number;
  /** How many of those it saw: the state the mutation answered, or a later one that includes it. */
  delivered: number;
  lost: number;
  /** Events whose change number it had already received. */
  duplicated: number;
  /** First receipts of a change number not above every change received before. */
  outOfOrder: number;
  /** Events of a change at or before its starting point (nothing from before the cursor). */
  beforeStart: number;
  /** MessageAdded for a message already added, or MessageUpdated for a message added after the start that it never got added. */
  wrongKind: number;
  /** Messages whose final view differs from the history page (or is missing from the view, or should not be there). */
  viewMismatches: number;
  /** A few of each problem, to start a diagnosis from. */
  examples?: Record<string, unknown[]>;
}

/**
 * Where a subscriber started, in the database's terms: the message cursor's seq and the change of
 * its insert, or the event cursor's change and the newest message inserted by then.
 */
export async function startPoint(databaseUrl: string, roomId: string, cursor: string): Promise<{ seq: number; change: number }> {
  const [tag, , nText] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  const n = Number(nText);
  if (tag === 'e1') {
    const [row] = await sql<{ seq: number }>(databaseUrl, 'SELECT coalesce(max(seq), 0) AS seq FROM messages WHERE room_id = $1 AND created_change <= $2', [roomId, n]);
    return { seq: Number(row.seq), change: n };
  }
  if (n === 0) return { seq: 0, change: 0 };
  const [row] = await sql<{ created_change: number }>(databaseUrl, 'SELECT created_change FROM messages WHERE room_id = $1 AND seq = $2', [roomId, n]);
  return { seq: n, change: Number(row.created_change) };
}

/**
 * Compares what `subscriber` received with the acknowledged changes and its final view with
 * `history` (the room as its user reads it with `messages`). `start` is where it started
 * (`startPoint`); `changedAfterStart` the ids of messages whose latest change follows it.
 */
export function tallyChanges(
  subscriber: EventSubscriber,
  acked: AckedChange[],
  history: Map<string, MessageState>,
  start: { seq: number; change: number },
  changedAfterStart: Set<string>,
): ChangeTally {
  const examples: Record<string, unknown[]> = {};
  const note = (what: string, example: unknown) => (examples[what] ??= []).length < 5 && examples[what].push(example);
  const seenChanges = new Set<number>();
  const addedIds = new Set<string>();
  const reached = new Map<string, MessageState[]>();
  let duplicated = 0;
  let outOfOrder = 0;
  let beforeStart = 0;
  let wrongKind = 0;
  let highest = start.change;
  for (const e of subscriber.events) {
    if (e.change <= start.change) {
      beforeStart++;
      note('beforeStart', { change: e.change, seq: e.message.seq });
    }
    if (seenChanges.has(e.change)) {
      duplicated++;
      note('duplicated', { change: e.change, seq: e.message.seq, session: e.session });
      continue;
    }
    seenChanges.add(e.change);
    if (e.change <= highest) {
      outOfOrder++;
      note('outOfOrder', { change: e.change, after: highest, session: e.session });
    }
    highest = Math.max(highest, e.change);
    if (e.kind === 'MessageAdded' ? addedIds.has(e.message.id) : e.message.seq > start.seq && !addedIds.has(e.message.id)) {
      wrongKind++;
      note('wrongKind', { kind: e.kind, seq: e.message.seq, change: e.change });
    }
    if (e.kind === 'MessageAdded') addedIds.add(e.message.id);
    const states = reached.get(e.message.id) ?? [];
    states.push(e.message);
    reached.set(e.message.id, states);
  }
  let lost = 0;
  for (const change of acked) {
    const best = Math.max(-1, ...(reached.get(change.messageId) ?? []).map((s) => levelOf(s, change.component)));
    if (best < change.level) {
      lost++;
      note('lost', { ...change, best });
    }
  }
  let viewMismatches = 0;
  const view = subscriber.view();
  for (const [id, truth] of history) {
    const mustHave = truth.seq > start.seq || changedAfterStart.has(id);
    const mine = view.get(id);
    if (mustHave ? JSON.stringify(mine) !== JSON.stringify(truth) : mine !== undefined) {
      viewMismatches++;
      note('viewMismatch', { seq: truth.seq, expected: mustHave ? truth : 'absent', got: mine ?? 'absent' });
    }
  }
  return {
    subscriber: subscriber.name,
    expected: acked.length,
    delivered: acked.length - lost,
    lost,
    duplicated,
    outOfOrder,
    beforeStart,
    wrongKind,
    viewMismatches,
    ...(Object.keys(examples).length ? { examples } : {}),
  };
}

/** The ids of the room's messages whose latest change follows `change`. */
export async function changedAfter(databaseUrl: string, roomId: string, change: number): Promise<Set<string>> {
  const rows = await sql<{ id: string }>(databaseUrl, 'SELECT id FROM messages WHERE room_id = $1 AND change_seq > $2', [roomId, change]);
  return new Set(rows.map((r) => r.id));
}

/**
 * A scenario's change report: its acknowledged changes by kind, each roomEvents subscriber's tally
 * (reads each one's start, the history as its user sees it, and compares: see `tallyChanges`), and
 * the changes refused with CONFLICT although the message is not deleted (there must be none).
 */
export async function changeReport(url: string, databaseUrl: string, changes: ChangeTraffic, subscribers: EventSubscriber[]): Promise<ChangeReport> {
  const tallies = await Promise.all(
    subscribers.map(async (s) => {
      const start = await startPoint(databaseUrl, s.roomId, s.firstCursor);
      const [history, changed] = await Promise.all([historyAs(url, s.user, s.roomId), changedAfter(databaseUrl, s.roomId, start.change)]);
      return tallyChanges(s, changes.acked, history, start, changed);
    }),
  );
  const refusedIds = [...new Set(changes.refused.map((r) => r.messageId))];
  const alive = await sql<{ id: string }>(databaseUrl, 'SELECT id FROM messages WHERE id = ANY($1::uuid[]) AND deleted_at IS NULL', [refusedIds]);
  const wronglyRefused = changes.refused.filter((r) => alive.some((m) => m.id === r.messageId));
  return { acked: changes.acked.length, byKind: changes.counts(), tallies, wronglyRefused };
}

/**
 * The message tally of a roomEvents subscriber: its MessageAdded events against the acknowledged
 * sends after `afterSeq`. roomEvents is in change order, not seq order: a message changed again
 * before a lost signal was healed first arrives, as MessageAdded, at its later change (guarantee
 * 8), so an inversion of seq is reported apart (`seqInversions`) and order is checked by change.
 */
export function tallyAdded(subscriber: EventSubscriber, acked: Iterable<Seen>, afterSeq = 0): SubscriberTally {
  const t = tally(subscriber.name, acked, subscriber.added(), afterSeq);
  return { ...t, outOfOrder: 0, seqInversions: t.outOfOrder };
}
