import { RedisPubSub } from 'graphql-redis-subscriptions';
import type Redis from 'ioredis';
import { warnAtMostEvery, type Logger } from '../logger';
import { AnsweringRedis } from '../redis-client';
import { within } from '../within';
import type { PubSub, Topic } from './types';

/**
 * Redis pub/sub through graphql-redis-subscriptions. The publisher has no offline queue and a
 * command timeout, so a send never waits on a dead Redis (nor, after one timeout, on a Redis that
 * stopped answering), and pipelines automatically (in call order, so a room's changes are still
 * published in change order). The subscriber reconnects by itself (and is made to when the
 * publisher finds Redis not answering); this bus then subscribes its channels again, and keeps
 * asking for any channel Redis refuses (`NOPERM`: an ACL without it, at start or after a change)
 * until it takes them all, reporting pub/sub down meanwhile, not up with nothing arriving. Each
 * time it has them all after a loss or a refusal, the reconnect is reported, so hubs can read
 * what they missed.
 */
export class RedisBus implements PubSub {
  private readonly publisher: AnsweringRedis;
  private readonly subscriber: AnsweringRedis;
  private readonly bus: RedisPubSub;
  private readonly reconnectListeners = new Set<() => void>();
  /** Publishes not yet answered: `close` lets them out before it quits. */
  private readonly publishing = new Set<Promise<unknown>>();
  /** The channels subscribed, each with how many subscriptions it has: what a new connection subscribes again. */
  private readonly channels = new Map<string, number>();
  /** Subscriptions not made yet: refused by Redis, or asked for while the connection was being restored. */
  private readonly waiting = new Set<Waiting>();
  /** Subscriptions being made: `close` lets them finish before it quits (a SUBSCRIBE the QUIT cut off fails a promise of the library's that nobody waits for). */
  private readonly making = new Map<Waiting, Promise<void>>();
  /** The connection whose restore runs or is due again (none while the connection has every channel), and when again. */
  private restoringFor?: number;
  private restoring?: NodeJS.Timeout;
  /** Counts the subscriber's connections: an answer to an earlier one's SUBSCRIBE is not this one's. */
  private connections = 0;
  private readonly refused: (fields: Record<string, unknown>) => void;
  private changed?: { promise: Promise<void>; resolve(): void };
  private closed = false;
  /** Asks Redis something now and then, so that an instance with nothing to publish notices a Redis that stopped answering. */
  private readonly liveness: NodeJS.Timeout;

  constructor(
    url: string,
    private readonly log: Logger,
  ) {
    const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2000);
    this.publisher = new AnsweringRedis(url, {
      enableOfflineQueue: false,
      commandTimeout: 2000,
      maxRetriesPerRequest: 0,
      retryStrategy,
      lazyConnect: false,
      enableAutoPipelining: true, // the publishes of every send in one turn of the event loop leave in one write
    });
    // Not ioredis's own resubscription: it sends the SUBSCRIBE and drops a refusal where nobody hears it.
    this.subscriber = new AnsweringRedis(url, { retryStrategy, maxRetriesPerRequest: null, autoResubscribe: false });
    for (const [name, client] of [['publisher', this.publisher], ['subscriber', this.subscriber]] as const) {
      client.on('error', (err) => log.warn({ err: err.message, client: name }, 'redis connection error'));
    }
    // Redis stopped answering with its connections open (a stopped process, a stalled host): the
    // publisher connects again, and so does the subscriber, which would hear nothing meanwhile yet
    // count as up. Both stay short of ready until Redis answers: pub/sub is down (readiness, the
    // revocation check before heals), and its return is a reconnect like any other.
    this.publisher.on('unanswered', () => {
      log.warn('redis did not answer in time; pub/sub is down until it does');
      this.subscriber.giveUp();
    });
    // An instance that publishes nothing would not notice it (its subscribers waiting on heals, its
    // sockets' sessions not checked before them): it asks every LIVENESS_PING_MS.
    this.liveness = setInterval(() => {
      if (this.publisher.answering) this.publisher.ping().catch(() => undefined);
    }, LIVENESS_PING_MS);
    this.liveness.unref();
    this.refused = warnAtMostEvery(log, REFUSED_WARNING_MS, 'redis refused a subscription; pub/sub is down until it takes every channel');
    this.subscriber.on('ready', () => {
      this.connections++;
      if (this.connections > 1) this.restore(this.connections); // the first has no channels yet
      this.notifyChanged();
    });
    this.subscriber.on('end', () => this.notifyChanged());
    this.bus = new RedisPubSub({ publisher: this.publisher, subscriber: this.subscriber });
  }

  /**
   * Gives the subscriber's connection every channel wanted: those it had (after a reconnect) and
   * the subscriptions waiting for Redis; again after a while as long as Redis refuses any. Once it
   * has them all, pub/sub is up and the reconnect is reported (what was published before may have
   * been missed). One run per connection; subscriptions refused meanwhile join it.
   */
  private restore(connection: number, attempt = 0): void {
    clearTimeout(this.restoring);
    this.restoringFor = connection;
    const current = () => !this.closed && connection === this.connections && this.subscriber.answering; // else the next connection restores
    const run = async () => {
      const channels = [...this.channels.keys()];
      if (channels.length > 0) await this.subscriber.subscribe(...channels);
      while (this.waiting.size > 0 && current()) {
        for (const entry of [...this.waiting]) if (current()) await this.take(entry);
      }
      if (!current()) return;
      for (const channel of channels) if (!this.channels.has(channel)) void this.subscriber.unsubscribe(channel).catch(() => undefined); // unsubscribed meanwhile
      this.restoringFor = undefined;
      this.log.info({ channels: this.channels.size }, 'redis subscriber listening again');
      this.notifyChanged();
      for (const listener of this.reconnectListeners) listener();
    };
    run().catch((err: Error) => {
      if (!current()) return;
      this.refused({ err: err.message, channels: this.channels.size + this.waiting.size });
      this.restoring = setTimeout(() => current() && this.restore(connection, attempt + 1), Math.min(RESUBSCRIBE_FIRST_MS * 2 ** attempt, RESUBSCRIBE_MAX_MS));
      this.restoring.unref();
    });
  }

  /**
   * Makes a waiting subscription (throws when Redis refuses it). Its channel is asked for first on
   * the connection itself: the library's own refusal also rejects a promise nobody waits for.
   */
  private take(entry: Waiting): Promise<void> {
    const making = this.make(entry);
    const settled = () => void this.making.delete(entry);
    this.making.set(entry, making);
    making.then(settled, settled);
    return making;
  }

  private async make(entry: Waiting): Promise<void> {
    if (entry.cancelled) return void this.waiting.delete(entry);
    // (A subscription being made by `subscribe` is not in `waiting`, so a restore never makes it twice.)
    if (!this.channels.has(entry.topic)) await this.subscriber.subscribe(entry.topic);
    if (this.closed) return;
    if (entry.cancelled) {
      // Unsubscribed meanwhile: the channel asked for goes too, unless another subscription has it or is being made.
      this.waiting.delete(entry);
      const wanted = this.channels.has(entry.topic) || [...this.making.keys()].some((other) => other !== entry && other.topic === entry.topic);
      if (!wanted) void this.subscriber.unsubscribe(entry.topic).catch(() => undefined);
      return;
    }
    const id = await this.bus.subscribe(entry.topic, entry.handler);
    this.waiting.delete(entry);
    if (entry.cancelled) return this.bus.unsubscribe(id); // unsubscribed meanwhile (the library's last one unsubscribes the channel)
    entry.id = id;
    this.channels.set(entry.topic, (this.channels.get(entry.topic) ?? 0) + 1);
  }

  async publish<T>(topic: Topic<T>, payload: T): Promise<void> {
    const published = this.bus.publish(topic.name, payload);
    this.publishing.add(published);
    try {
      await published;
    } finally {
      this.publishing.delete(published);
    }
  }

  async subscribe<T>(topic: Topic<T>, handler: (payload: T) => void) {
    // Asked of a connection that is up: a SUBSCRIBE queued while it is down fails for good when the
    // connection does (Redis refuses its password: ioredis fails every queued command).
    while (!this.subscriber.answering) {
      if (this.closed) return async () => undefined;
      await this.subscriberChanged();
    }
    // Anyone with access to the Redis may publish on these channels (a person testing by hand,
    // another version during a rolling deploy): a message this instance cannot read is dropped,
    // where it would otherwise end the process of every instance at once.
    const handle = (payload: unknown) => {
      try {
        handler(payload as T);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, channel: topic.name }, 'pub/sub message dropped: not one this instance can read');
      }
    };
    const entry: Waiting = { topic: topic.name, handler: handle, cancelled: false };
    let made = false;
    if (this.restoringFor === undefined) {
      made = await this.take(entry).then(
        () => true,
        (err: Error) => {
          if (this.subscriber.answering) this.refused({ err: err.message, channel: topic.name });
          return this.closed; // closed: nothing to wait for
        },
      );
    }
    // Refused (an ACL without this channel), the connection lost meanwhile, or its channels being
    // restored: it waits, made by the connection's restore (now, or when the next one is ready),
    // and pub/sub is down until then.
    if (!made) {
      this.waiting.add(entry);
      if (this.subscriber.answering && this.restoringFor !== this.connections) this.restore(this.connections);
    }
    // After `close` there is nothing to unsubscribe from (the library's UNSUBSCRIBE, sent on a closed
    // connection, would fail where nobody can catch it).
    return async () => {
      if (entry.cancelled) return;
      entry.cancelled = true;
      if (entry.id === undefined) return void this.waiting.delete(entry);
      const left = this.channels.get(topic.name)! - 1;
      if (left > 0) this.channels.set(topic.name, left);
      else this.channels.delete(topic.name);
      if (!this.closed) this.bus.unsubscribe(entry.id);
    };
  }

  /** Resolves when the subscriber is next ready, has its channels again, or has ended; one promise for every caller waiting. */
  private subscriberChanged(): Promise<void> {
    if (!this.changed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.changed = { promise, resolve };
    }
    return this.changed.promise;
  }

  private notifyChanged(): void {
    const changed = this.changed;
    this.changed = undefined;
    changed?.resolve();
  }

  get connected(): boolean {
    return this.subscriber.answering && this.restoringFor === undefined;
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  async ping(): Promise<boolean> {
    if (!this.connected) return false;
    try {
      return (await this.publisher.ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async ready(timeoutMs: number): Promise<boolean> {
    const connected = (client: Redis) =>
      client.status === 'ready' ? Promise.resolve() : new Promise<void>((resolve) => client.once('ready', () => resolve()));
    return within(Promise.all([connected(this.publisher), connected(this.subscriber)]).then(() => true), timeoutMs, false);
  }

  /**
   * Quits both connections once the publishes and subscriptions under way are answered, waiting at
   * most `graceMs` in all: a `QUIT` would overtake the publishes still queued for the connection's
   * next write (the end of an assistant reply that the shutdown stopped, say), and `quit` on a connection that is
   * down waits in its offline queue for Redis to return, so after the grace both are cut (which
   * also stops their reconnecting).
   */
  async close(graceMs = 1000): Promise<void> {
    this.closed = true;
    clearTimeout(this.restoring);
    clearInterval(this.liveness);
    this.reconnectListeners.clear();
    const quit = Promise.allSettled([...this.publishing, ...this.making.values()]).then(() => this.bus.close());
    await within(quit.then(() => undefined, () => undefined), graceMs, undefined);
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }
}

/** A subscription of this bus: its channel, its handler, and once Redis took it, the library's id for it. */
interface Waiting {
  topic: string;
  handler: (payload: unknown) => void;
  id?: number;
  cancelled: boolean;
}

/** Waits before subscribing the channels again after Redis refused them: doubling from the first, up to the most. */
const RESUBSCRIBE_FIRST_MS = 250;
const RESUBSCRIBE_MAX_MS = 5000;
/** How often an instance asks Redis whether it answers (a PING; its command timeout says no). */
const LIVENESS_PING_MS = 5000;
/** How often the refusal is logged at most while it lasts. */
const REFUSED_WARNING_MS = 10_000;
