import { RedisPubSub } from 'graphql-redis-subscriptions';
import Redis from 'ioredis';
import { warnAtMostEvery, type Logger } from '../logger';
import { within } from '../within';
import type { PubSub, Topic } from './types';

/**
 * Redis pub/sub through graphql-redis-subscriptions. The publisher has no offline queue and a
 * command timeout, so a send never waits on a dead Redis, and pipelines automatically (in call
 * order, so a room's changes are still published in change order). The subscriber reconnects by
 * itself and this bus subscribes its channels again, until Redis takes them (one that refuses
 * them — `NOPERM` after its ACL changed — is reported down meanwhile, not up with nothing arriving);
 * each time they are back the reconnect is reported, so hubs can read what they missed.
 */
export class RedisBus implements PubSub {
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly bus: RedisPubSub;
  private readonly reconnectListeners = new Set<() => void>();
  /** Publishes not yet answered: `close` lets them out before it quits. */
  private readonly publishing = new Set<Promise<unknown>>();
  /** The channels subscribed, each with how many subscriptions it has: what a new connection subscribes again. */
  private readonly channels = new Map<string, number>();
  private wasReady = false;
  /** Whether the subscriber's connection has its channels: false from a reconnect until Redis takes them again. */
  private listening = true;
  private resubscribing?: NodeJS.Timeout;
  /** Counts the subscriber's connections: an answer to an earlier one's SUBSCRIBE is not this one's. */
  private connections = 0;
  private readonly resubscribeRefused: (fields: Record<string, unknown>) => void;
  private changed?: { promise: Promise<void>; resolve(): void };
  private closed = false;

  constructor(
    url: string,
    private readonly log: Logger,
  ) {
    const retryStrategy = (times: number) => Math.min(50 * 2 ** times, 2000);
    this.publisher = new Redis(url, {
      enableOfflineQueue: false,
      commandTimeout: 2000,
      maxRetriesPerRequest: 0,
      retryStrategy,
      lazyConnect: false,
      enableAutoPipelining: true, // the publishes of every send in one turn of the event loop leave in one write
    });
    // Not ioredis's own resubscription: it sends the SUBSCRIBE and drops a refusal where nobody hears it.
    this.subscriber = new Redis(url, { retryStrategy, maxRetriesPerRequest: null, autoResubscribe: false });
    for (const [name, client] of [['publisher', this.publisher], ['subscriber', this.subscriber]] as const) {
      client.on('error', (err) => log.warn({ err: err.message, client: name }, 'redis connection error'));
    }
    this.resubscribeRefused = warnAtMostEvery(log, REFUSED_WARNING_MS, 'redis refused the channels again; pub/sub is down until it takes them');
    this.subscriber.on('ready', () => {
      this.connections++;
      if (this.wasReady) {
        this.listening = false;
        this.resubscribe(0);
      }
      this.wasReady = true;
      this.notifyChanged();
    });
    this.subscriber.on('end', () => this.notifyChanged());
    this.bus = new RedisPubSub({ publisher: this.publisher, subscriber: this.subscriber });
  }

  /**
   * Subscribes the channels on the subscriber's new connection, again after a while as long as
   * Redis refuses them; once it takes them, reports the reconnect (what was published before
   * that may have been missed).
   */
  private resubscribe(attempt: number): void {
    clearTimeout(this.resubscribing);
    const channels = [...this.channels.keys()];
    const done = () => {
      this.listening = true;
      this.log.info({ channels: channels.length }, 'redis subscriber reconnected');
      this.notifyChanged();
      for (const listener of this.reconnectListeners) listener();
    };
    if (channels.length === 0) return done();
    const connection = this.connections;
    const current = () => !this.closed && connection === this.connections && this.subscriber.status === 'ready'; // else the next connection subscribes again
    this.subscriber.subscribe(...channels).then(
      () => {
        if (!current()) return;
        for (const channel of channels) if (!this.channels.has(channel)) void this.subscriber.unsubscribe(channel).catch(() => undefined); // unsubscribed meanwhile
        done();
      },
      (err: Error) => {
        if (!current()) return;
        this.resubscribeRefused({ err: err.message, channels: channels.length });
        const again = () => current() && this.resubscribe(attempt + 1);
        this.resubscribing = setTimeout(again, Math.min(RESUBSCRIBE_FIRST_MS * 2 ** attempt, RESUBSCRIBE_MAX_MS));
        this.resubscribing.unref();
      },
    );
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
    // Asked of a connected subscriber only. A SUBSCRIBE queued while it is down fails for good when
    // the connection does (Redis refuses its password: ioredis fails every queued command), so the
    // subscription would never be made (and the library rejects a promise of its own that nobody
    // waits on: `main.ts` logs those). Waiting here, it is made once Redis takes the connection.
    while (!this.connected) {
      if (this.closed) return async () => undefined;
      await this.subscriberChanged();
    }
    // Anyone with access to the Redis may publish on these channels (a person testing by hand,
    // another version during a rolling deploy): a message this instance cannot read is dropped,
    // where it would otherwise end the process of every instance at once.
    const id = await this.bus.subscribe(topic.name, (payload: T) => {
      try {
        handler(payload);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, channel: topic.name }, 'pub/sub message dropped: not one this instance can read');
      }
    });
    this.channels.set(topic.name, (this.channels.get(topic.name) ?? 0) + 1);
    let subscribed = true;
    // After `close` there is nothing to unsubscribe from (the library's UNSUBSCRIBE, sent on a closed
    // connection, would fail where nobody can catch it).
    return async () => {
      if (!subscribed) return;
      subscribed = false;
      const left = this.channels.get(topic.name)! - 1;
      if (left > 0) this.channels.set(topic.name, left);
      else this.channels.delete(topic.name);
      if (!this.closed) this.bus.unsubscribe(id);
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
    return this.subscriber.status === 'ready' && this.listening;
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
   * Quits both connections once the publishes made before are answered, waiting at most `graceMs`
   * in all: a `QUIT` would overtake the publishes still queued for the connection's next write (the
   * end of an assistant reply that the shutdown stopped, say), and `quit` on a connection that is
   * down waits in its offline queue for Redis to return, so after the grace both are cut (which
   * also stops their reconnecting).
   */
  async close(graceMs = 1000): Promise<void> {
    this.closed = true;
    clearTimeout(this.resubscribing);
    this.reconnectListeners.clear();
    const quit = Promise.allSettled(this.publishing).then(() => this.bus.close());
    await within(quit.then(() => undefined, () => undefined), graceMs, undefined);
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }
}

/** Waits before subscribing the channels again after Redis refused them: doubling from the first, up to the most. */
const RESUBSCRIBE_FIRST_MS = 250;
const RESUBSCRIBE_MAX_MS = 5000;
/** How often the refusal is logged at most while it lasts. */
const REFUSED_WARNING_MS = 10_000;
