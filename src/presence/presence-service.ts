import type { DataSource } from 'typeorm';
import type { Logger } from '../logger';
import type { PubSub } from '../pubsub';
import { quietPublisher, unavailable } from './publish';
import type { EphemeralStore } from './store';

const SWEEP_BATCH = 500;
const HEARTBEAT_BATCH = 1000;

export interface PresenceOptions {
  db: DataSource;
  store: EphemeralStore;
  pubsub: PubSub;
  log: Logger;
  /** This instance's name among the holders of a user's presence. */
  instanceId: string;
  /** A holder not heard from for this long is gone; heartbeats come three times per TTL. */
  ttlMs: number;
}

/**
 * Who is online; part of docs/guarantees.md, guarantee 11. A user is online while at least one
 * instance holds a socket of theirs: this instance counts its sockets per user, holds the user in
 * the store on the first and releases them after the last, and renews what it holds by heartbeat
 * (every `ttlMs / 3`). An instance that dies stops renewing; every instance sweeps the store as
 * often, and the one that finds a user's every holder lapsed takes the user offline. Each flip is
 * published once, as `{ kind: 'presence' }` on the topic of every room of the user.
 *
 * A graceful stop leaves its users held until their deadline: clients reconnecting elsewhere
 * within it see no flicker; the others go offline by sweep.
 */
export class PresenceService {
  /** userId → sockets on this instance. */
  private readonly sockets = new Map<string, number>();
  /** Per user, the announcements still being published, so they go out in the order the store decided them. */
  private readonly announcing = new Map<string, Promise<void>>();
  private readonly pending = new Set<Promise<unknown>>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private ticking = false;

  private readonly publishSignal: ReturnType<typeof quietPublisher>;

  constructor(private readonly options: PresenceOptions) {
    this.publishSignal = quietPublisher(options.pubsub, options.log);
    this.timer = setInterval(() => {
      if (this.ticking) return; // a slow store: skip a beat rather than pile them up
      this.ticking = true;
      this.track(this.tick().finally(() => (this.ticking = false)));
    }, Math.max(100, Math.floor(options.ttlMs / 3)));
    this.timer.unref();
  }

  /** A socket of the user opened; call the returned function (once or more) when it closes. */
  connect(userId: string): () => void {
    if (this.closed) return () => undefined;
    const count = (this.sockets.get(userId) ?? 0) + 1;
    this.sockets.set(userId, count);
    if (count === 1) {
      const { store, instanceId, ttlMs } = this.options;
      this.track(store.holdPresence(instanceId, [userId], ttlMs).then((flipped) => this.announce(flipped, true), this.failed('hold')));
    }
    let open = true;
    return () => {
      if (!open || this.closed) return;
      open = false;
      this.disconnect(userId);
    };
  }

  /** Which of `userIds` are online on any instance: one store round trip (Redis: one script call). */
  online(userIds: readonly string[]): Promise<Set<string>> {
    return this.options.store.online([...new Set(userIds)]).catch(unavailable); // not INTERNAL_SERVER_ERROR: Redis down or not answering
  }

  /** Stops heartbeats and sweeps and waits for what is in flight; users held here lapse by themselves. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }

  private disconnect(userId: string): void {
    const count = (this.sockets.get(userId) ?? 1) - 1;
    if (count > 0) {
      this.sockets.set(userId, count);
      return;
    }
    this.sockets.delete(userId);
    const { store, instanceId } = this.options;
    this.track(store.releasePresence(instanceId, userId).then((gone) => this.announce(gone ? [userId] : [], false), this.failed('release')));
  }

  /** The heartbeat (re-announcing anyone the store lost, e.g. after a Redis outage) and the sweep. */
  private async tick(): Promise<void> {
    const { store, instanceId, ttlMs } = this.options;
    const held = [...this.sockets.keys()];
    for (let i = 0; i < held.length; i += HEARTBEAT_BATCH) {
      await store.holdPresence(instanceId, held.slice(i, i + HEARTBEAT_BATCH), ttlMs).then(
        // One that disconnected meanwhile is released after this hold, and announced after it.
        (flipped) => this.announce(flipped, true),
        this.failed('heartbeat'),
      );
    }
    await store.sweepPresence(SWEEP_BATCH).then((gone) => this.announce(gone, false), this.failed('sweep'));
  }

  /**
   * Publishes the flips in every room of each user. Called synchronously from the store's answer,
   * which comes in the order the store applied the operations; each user's announcements are chained.
   */
  private announce(userIds: string[], online: boolean): void {
    for (const userId of userIds) {
      const previous = this.announcing.get(userId) ?? Promise.resolve();
      const next = previous.then(() => this.publish(userId, online));
      this.announcing.set(userId, next);
      this.track(next.finally(() => this.announcing.get(userId) === next && this.announcing.delete(userId)));
    }
  }

  private async publish(userId: string, online: boolean): Promise<void> {
    const { db, log } = this.options;
    try {
      const rooms: Array<{ room_id: string }> = await db.query('SELECT room_id FROM memberships WHERE user_id = $1', [userId]);
      await Promise.all(rooms.map(({ room_id: roomId }) => this.publishSignal(roomId, { kind: 'presence', userId, online })));
    } catch (err) {
      log.warn({ err: (err as Error).message, userId }, 'could not announce a presence change');
    }
  }

  private failed(what: string) {
    return (err: unknown) => this.options.log.warn({ err: (err as Error).message }, `presence ${what} failed; the next heartbeat heals it`);
  }

  private track(work: Promise<unknown>): void {
    const tracked = work.catch(() => undefined);
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }
}
