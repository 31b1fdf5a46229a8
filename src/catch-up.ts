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
 * Longest a catch-up turn waits for live frames being written before it starts anyway: live
 * events go first, but a room busy without pause still lets catch-up on.
 */
export const LIVE_FIRST_MAX_MS = 100;

const limit = pLimit(CATCH_UP_CONCURRENCY);

/** Live fan-outs whose frames are being written (`liveWriteOut`). */
let liveWriting = 0;

/**
 * Marks a live fan-out's write-out, from when it is scheduled until its last frame is written:
 * meanwhile no catch-up turn starts (for up to LIVE_FIRST_MAX_MS), so that a large room's frames,
 * written in slices with other work in between, are not held back by catch-up work in every gap.
 * Returns the call that ends it (once).
 */
export function liveWriteOut(): () => void {
  liveWriting++;
  let ended = false;
  return () => {
    if (!ended) liveWriting--;
    ended = true;
  };
}

/** Settles at the end of this turn of the event loop. */
export const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs `work` when one of the instance's catch-up turns is free; resolves or rejects as it does.
 * Each turn starts on a new turn of the event loop: a turn's work that never waits (a replay of
 * fields that read nothing) would otherwise let thousands of queued turns run back to back, and
 * nothing else (requests, live events, probes) would run meanwhile. A turn also waits while live
 * frames are being written (`liveWriteOut`), up to LIVE_FIRST_MAX_MS.
 */
export function catchUpTurn<T>(work: () => Promise<T>): Promise<T> {
  return limit(async () => {
    await nextTurn();
    const since = performance.now();
    while (liveWriting > 0 && performance.now() - since < LIVE_FIRST_MAX_MS) await nextTurn();
    return work();
  });
}
