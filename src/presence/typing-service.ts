import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { notMember, requireMember } from '../chat/access';
import { unauthenticated } from '../errors';
import { REPEATED_WARNING_MS, warnAtMostEvery, type Logger } from '../logger';
import type { PubSub } from '../pubsub';
import type { RateLimit } from '../rate-limit';
import { isUuid } from '../validation';
import { quietPublisher, unavailable } from './publish';
import type { EphemeralStore } from './store';

/** A `setTyping(true)` this soon after the last one that reached the store is answered from memory. */
export const TYPING_THROTTLE_MS = 1000;
const SWEEP_BATCH = 500;

export interface TypingOptions {
  db: DataSource;
  store: EphemeralStore;
  pubsub: PubSub;
  log: Logger;
  /** Typing ends this long after the last `setTyping(true)`. */
  ttlMs: number;
  /** Spent by each call that reaches the store, per user (`TYPING_PER_USER_PER_10S`); none: unlimited. */
  budget?: RateLimit;
  /** The process clock (unit tests pass their own). */
  now?: () => number;
}

/**
 * `setTyping`: who is typing in which room, for a few seconds; part of docs/guarantees.md,
 * guarantee 11 (never in the database, every instance, expires by itself, never replayed).
 *
 * A flip publishes `{ kind: 'typing' }` on the room's topic (roomEvents subscribers on every
 * instance get `TypingChanged`); a refresh publishes nothing. `setTyping(true)` repeated within
 * `TYPING_THROTTLE_MS` costs nothing: no budget, no database, no Redis, no publish (concurrent repeats
 * share the first one's answer). Every other call spends one of the user's typing budget first,
 * refused or not (RATE_LIMITED when it is spent), and never the budget of other mutations: typing
 * on every keystroke does not hold up the user's sends. Typing ends `ttlMs` after the last
 * refresh: a timer on the instance that refreshed it ends it, and every instance sweeps now and
 * then for typing whose instance died.
 */
export class TypingService {
  /** The last `setTyping(true)` per `roomId:userId` that went to the store, and its answer. */
  private readonly recent = new Map<string, { at: number; answer: Promise<boolean> }>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly throttleMs: number;
  private readonly now: () => number;
  private closed = false;

  private readonly publishSignal: ReturnType<typeof quietPublisher>;
  /** Logs a typing `end` could not end, once a second at most (while Redis is down every removal fails it). */
  private readonly endFailed: (fields: Record<string, unknown>) => void;

  constructor(private readonly options: TypingOptions) {
    this.publishSignal = quietPublisher(options.pubsub, options.log);
    this.endFailed = warnAtMostEvery(options.log, REPEATED_WARNING_MS, 'could not end the typing of a member who left; it expires');
    this.now = options.now ?? Date.now;
    this.throttleMs = Math.min(TYPING_THROTTLE_MS, options.ttlMs / 2); // a throttled repeat must not outlive the typing
    this.sweeper = setInterval(() => void this.sweep(), options.ttlMs);
    this.sweeper.unref();
  }

  /**
   * The viewer starts (`typing: true`) or stops typing in a room; resolves to true. FORBIDDEN
   * unless a member (one answer for missing, foreign and malformed ids); SERVICE_UNAVAILABLE while
   * the store (Redis) is unreachable.
   */
  set(viewer: Viewer | null, roomId: string, typing: boolean): Promise<boolean> {
    if (!viewer) return Promise.reject(unauthenticated());
    if (!isUuid(roomId)) return Promise.reject(notMember());
    const userId = viewer.id;
    const key = `${roomId}:${userId}`;
    if (!typing) return this.spend(userId).then(() => this.stop(viewer, roomId, userId));
    const last = this.recent.get(key);
    if (last && this.now() - last.at < this.throttleMs) return last.answer;
    const answer = this.spend(userId).then(() => this.start(viewer, roomId, userId));
    this.recent.set(key, { at: this.now(), answer });
    answer.catch(() => undefined); // the caller gets it; a repeat within the window gets it too
    return answer;
  }

  /** Stops the timers; typing left in Redis ends by the other instances' sweeps. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    this.recent.clear();
  }

  private async spend(userId: string): Promise<void> {
    await this.options.budget?.consume(userId);
  }

  private async start(viewer: Viewer | null, roomId: string, userId: string): Promise<boolean> {
    await requireMember(this.options.db.manager, viewer, roomId);
    const fresh = await this.options.store.startTyping(roomId, userId, this.options.ttlMs).catch(unavailable);
    if (fresh) {
      // A removal may have been answered between the check above and this write, its `end` finding
      // nothing to end yet: a typing this write started is kept only for a member still. (A refresh
      // needs no second read: its typing was there, so a removal's `end` comes after it and ends it.)
      try {
        await requireMember(this.options.db.manager, viewer, roomId);
      } catch (err) {
        await this.options.store.stopTyping(roomId, userId).catch(() => undefined); // else it expires
        throw err;
      }
    }
    this.schedule(roomId, userId, this.options.ttlMs);
    if (fresh) await this.publish(roomId, userId, true);
    return true;
  }

  private async stop(viewer: Viewer | null, roomId: string, userId: string): Promise<boolean> {
    await requireMember(this.options.db.manager, viewer, roomId);
    await this.clear(roomId, userId);
    return true;
  }

  /**
   * The user left the room or was removed (`MembershipService`, after the room was told): their
   * typing there ends now, `TypingChanged` false if they were typing, rather than when it expires.
   * Never throws: a store that is down lets it expire.
   */
  async end(roomId: string, userId: string): Promise<void> {
    await this.clear(roomId, userId).catch((err: unknown) => this.endFailed({ err: (err as Error).message, roomId }));
  }

  /** Ends the user's typing in the room: forgets its timer and throttle, and publishes the stop if they were typing. */
  private async clear(roomId: string, userId: string): Promise<void> {
    const key = `${roomId}:${userId}`;
    this.recent.delete(key);
    clearTimeout(this.timers.get(key));
    this.timers.delete(key);
    if (await this.options.store.stopTyping(roomId, userId).catch(unavailable)) await this.publish(roomId, userId, false);
  }

  /** Ends the typing when its deadline passes, unless refreshed meanwhile (then waits for the new deadline). */
  private schedule(roomId: string, userId: string, inMs: number): void {
    if (this.closed) return;
    const key = `${roomId}:${userId}`;
    clearTimeout(this.timers.get(key));
    const timer = setTimeout(async () => {
      if (this.timers.get(key) !== timer) return;
      this.timers.delete(key);
      try {
        const outcome = await this.options.store.expireTyping(roomId, userId);
        if (outcome === 'expired') await this.publish(roomId, userId, false);
        else if (typeof outcome === 'number') this.schedule(roomId, userId, outcome);
      } catch (err) {
        this.options.log.warn({ err: (err as Error).message, roomId }, 'could not end typing; the sweep will');
      }
    }, inMs);
    timer.unref();
    this.timers.set(key, timer);
  }

  /** Ends typing whose instance died before its timer fired; forgets throttle entries past their window. */
  private async sweep(): Promise<void> {
    const now = this.now();
    for (const [key, { at }] of this.recent) if (now - at >= this.throttleMs) this.recent.delete(key);
    try {
      for (const { roomId, userId } of await this.options.store.sweepTyping(SWEEP_BATCH)) await this.publish(roomId, userId, false);
    } catch (err) {
      this.options.log.warn({ err: (err as Error).message }, 'typing sweep failed; retrying at the next one');
    }
  }

  private publish(roomId: string, userId: string, typing: boolean): Promise<void> {
    return this.publishSignal(roomId, { kind: 'typing', userId, typing });
  }
}
