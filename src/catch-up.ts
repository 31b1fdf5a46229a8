import pLimit from 'p-limit';

/**
 * How much catch-up work may use the database at once on this instance, across all subscriptions:
 * a feed's replay read, or a replay group's executions (`src/chat/message-feed.ts`,
 * `src/graphql/shared-subscribe.ts`). A group whose fields read nothing takes a turn too: the
 * turns also bound how much catch-up work one turn of the event loop does, so that sends and live
 * events keep their latency while thousands of subscriptions catch up. Hundreds of subscriptions resuming at once then take turns
 * (first come, first served) instead of queueing thousands of queries on the pool until its
 * checkouts time out; the rest of the pool stays free for live work (sends, live events, requests),
 * which is never queued here.
 */
export const CATCH_UP_CONCURRENCY = 6;

/**
 * While live frames are being written, a catch-up turn starts once this many slices of them have
 * been written since the last one started: live fan-outs get most of the event loop, catch-up a
 * steady share of it. Measured with 20 subscribers resuming 10,000 messages behind at once while
 * 1,000 others receive live messages (BENCHMARKS.md, "Live fan-outs before catch-up"): with no
 * turn held back the live p99 was 221–545 ms; with turns held for the whole write-out, catch-up
 * nearly stopped in a room written to without pause (75–96 s instead of 11–15 at 100 msg/s); one
 * turn per two slices kept the live p99 at 90–164 ms and the catch-up at 11–29 s.
 */
export const LIVE_SLICES_PER_TURN = 2;

/**
 * Longest a catch-up turn waits for live slices before it starts anyway (a safety bound: a live
 * write-out writes a slice on every turn of the event loop).
 */
export const LIVE_FIRST_MAX_MS = 100;

const limit = pLimit(CATCH_UP_CONCURRENCY);

/** Live fan-outs whose frames are being written (`liveWriteOut`). */
let liveWriting = 0;
/** Slices of live frames written so far (`liveSliceWritten`), and how many there were when the last catch-up turn started. */
let liveSlices = 0;
let liveSlicesAtLastTurn = 0;

/**
 * Marks a live fan-out's write-out, from when it is scheduled until its last frame is written. A
 * large room's frames go out in slices with other work in between; meanwhile catch-up turns start
 * one per LIVE_SLICES_PER_TURN slices written (`catchUpTurn`), so that the slices are not each
 * held back by several turns' work, and catch-up still goes on in a room written to without
 * pause. Returns the call that ends it (once).
 */
export function liveWriteOut(): () => void {
  liveWriting++;
  let ended = false;
  return () => {
    if (!ended) liveWriting--;
    ended = true;
  };
}

/** A slice of live frames has been written (see `liveWriteOut`). */
export function liveSliceWritten(): void {
  liveSlices++;
}

/** Settles at the end of this turn of the event loop. */
export const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs `work` when one of the instance's catch-up turns is free; resolves or rejects as it does.
 * Each turn starts on a new turn of the event loop: a turn's work that never waits (a replay of
 * fields that read nothing) would otherwise let thousands of queued turns run back to back, and
 * nothing else (requests, live events, probes) would run meanwhile. While live frames are being
 * written (`liveWriteOut`), turns start one per LIVE_SLICES_PER_TURN slices of them written
 * (waiting at most LIVE_FIRST_MAX_MS): live fan-outs and catch-up take turns.
 */
export function catchUpTurn<T>(work: () => Promise<T>): Promise<T> {
  return limit(async () => {
    await nextTurn();
    const since = performance.now();
    while (liveWriting > 0 && liveSlices - liveSlicesAtLastTurn < LIVE_SLICES_PER_TURN && performance.now() - since < LIVE_FIRST_MAX_MS) await nextTurn();
    liveSlicesAtLastTurn = liveSlices;
    return work();
  });
}
