import { RedisPubSub } from 'graphql-redis-subscriptions';
import Redis from 'ioredis';
import type { Logger } from '../logger';
import { within } from '../within';
import type { PubSub, Topic } from './types';

/**
 * Redis pub/sub through graphql-redis-subscriptions. The publisher has no offline queue and a
 * command timeout, so a send never waits on a dead Redis, and pipelines automatically (in call
 * order, so a room's changes are still published in change order); the subscriber reconnects and
 * resubscribes by itself, and each reconnect is reported so hubs can read what they missed.
 */
export class RedisBus implements PubSub {
  private readonly publisher: Redis;
  private readonly subscriber: Redis;
  private readonly bus: RedisPubSub;
  private readonly reconnectListeners = new Set<() => void>();
  /** Publishes not yet answered: `close` lets them out before it quits. */
  private readonly publishing = new Set<Promise<unknown>>();
  private wasReady = false;
  private changed?: Promise<void>;
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
    this.subscriber = new Redis(url, { retryStrategy, maxRetriesPerRequest: null });
    for (const [name, client] of [['publisher', this.publisher], ['subscriber', this.subscriber]] as const) {
      client.on('error', (err) => log.warn({ err: err.message, client: name }, 'redis connection error'));
    }
    this.subscriber.on('ready', () => {
      if (this.wasReady) {
        log.info('redis subscriber reconnected');
        for (const listener of this.reconnectListeners) listener();
      }
      this.wasReady = true;
    });
    this.bus = new RedisPubSub({ publisher: this.publisher, subscriber: this.subscriber });
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
    while (this.subscriber.status !== 'ready') {
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
    // After `close` there is nothing to unsubscribe from (the library's UNSUBSCRIBE, sent on a closed
    // connection, would fail where nobody can catch it).
    return async () => {
      if (!this.closed) this.bus.unsubscribe(id);
    };
  }

  /** Resolves when the subscriber is next ready, or has ended; one promise for every caller waiting. */
  private subscriberChanged(): Promise<void> {
    this.changed ??= new Promise<void>((resolve) => {
      const settle = () => {
        this.subscriber.off('ready', settle).off('end', settle);
        this.changed = undefined;
        resolve();
      };
      this.subscriber.on('ready', settle).on('end', settle);
    });
    return this.changed;
  }

  get connected(): boolean {
    return this.subscriber.status === 'ready';
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  async ping(): Promise<boolean> {
    if (this.subscriber.status !== 'ready') return false;
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
    this.reconnectListeners.clear();
    const quit = Promise.allSettled(this.publishing).then(() => this.bus.close());
    await within(quit.then(() => undefined, () => undefined), graceMs, undefined);
    this.publisher.disconnect();
    this.subscriber.disconnect();
  }
}
