// SessionService: revocations whose signal pub/sub did not take (this instance cut off from Redis)
// are published again once it is back, the newest MAX_UNPUBLISHED of them (docs/guarantees.md,
// "Revocation at once, everywhere").
import type { DataSource } from 'typeorm';
import { MAX_UNPUBLISHED, SessionService } from '../../src/auth/sessions';
import { TokenService } from '../../src/auth/tokens';
import { createLogger } from '../../src/logger';
import type { PubSub, Topic } from '../../src/pubsub';
import { waitFor } from '../support/fakes';

/** A bus that refuses publishes while `down`, and whose reconnect the test announces. */
function flakyBus() {
  const reconnected = new Set<() => void>();
  const bus = {
    down: true,
    connected: false,
    published: [] as string[],
    async publish<T>(_topic: Topic<T>, payload: T) {
      if (bus.down) throw new Error('Connection is closed.');
      bus.published.push((payload as { sessionId: string }).sessionId);
    },
    subscribe: async () => async () => undefined,
    onReconnect(listener: () => void) {
      reconnected.add(listener);
      return () => reconnected.delete(listener);
    },
    ping: async () => !bus.down,
    ready: async () => true,
    close: async () => undefined,
    /** The subscribing connection is back (publishes may still fail). */
    reconnect() {
      bus.connected = true;
      for (const listener of reconnected) listener();
    },
    /** Up again: the bus reconnected. */
    back() {
      bus.down = false;
      bus.reconnect();
    },
  };
  return bus;
}

function serviceOn(bus: ReturnType<typeof flakyBus>) {
  const tokens = new TokenService('a-secret-long-enough-for-hs256-signing-here', 60);
  const service = new SessionService({} as DataSource, tokens, bus as unknown as PubSub, createLogger('silent'), 3600);
  service.start();
  const revoke = (sessionId: string) => (service as unknown as { broadcast(id: string): Promise<void> }).broadcast(sessionId);
  return { service, revoke };
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);

describe('revocations pub/sub did not take', () => {
  let service: SessionService | undefined;
  afterEach(() => service?.close());

  it(`publishes all of them once the bus is back, up to ${MAX_UNPUBLISHED}`, async () => {
    const bus = flakyBus();
    const on = serviceOn(bus);
    service = on.service;
    const heardHere: string[] = [];
    service.onRevoked((id) => heardHere.push(id));
    for (const id of ids(MAX_UNPUBLISHED)) await on.revoke(id);
    expect(heardHere).toHaveLength(MAX_UNPUBLISHED); // this instance's own sockets are told at once
    expect(bus.published).toEqual([]);
    bus.back();
    await waitFor(() => bus.published.length === MAX_UNPUBLISHED, 'every revocation published', 10_000);
    expect(bus.published).toEqual(ids(MAX_UNPUBLISHED));
    await on.revoke('next');
    expect(bus.published).toHaveLength(MAX_UNPUBLISHED + 1); // each once: none kept after it went
  });

  it('keeps the newest when more were left: the oldest are for the other instances\' sweep', async () => {
    const bus = flakyBus();
    const on = serviceOn(bus);
    service = on.service;
    for (const id of ids(MAX_UNPUBLISHED + 1)) await on.revoke(id);
    bus.back();
    await waitFor(() => bus.published.length === MAX_UNPUBLISHED, 'the kept revocations published', 10_000);
    expect(bus.published).toEqual(ids(MAX_UNPUBLISHED + 1).slice(1));
  });

  it('publishes them after the next revocation the bus takes, without a reconnect', async () => {
    const bus = flakyBus();
    const on = serviceOn(bus);
    service = on.service;
    for (const id of ids(100)) await on.revoke(id);
    bus.down = false; // the publishing connection came back; the subscriber never went away
    await Promise.all(['taken 1', 'taken 2', 'taken 3'].map(on.revoke)); // each would publish the kept ones again
    await waitFor(() => bus.published.length >= 103, 'the ones left published');
    await new Promise((r) => setTimeout(r, 100));
    expect(bus.published.slice(0, 3)).toEqual(['taken 1', 'taken 2', 'taken 3']);
    expect(bus.published.slice(3)).toEqual(ids(100)); // once each, in order
  });

  it('tries again every second when only the publishing connection was away (no reconnect, no other revocation), and stops when closed', async () => {
    const bus = flakyBus();
    const on = serviceOn(bus);
    service = on.service;
    await on.revoke('lost');
    await new Promise((r) => setTimeout(r, 1500)); // still down: tried and refused again
    expect(bus.published).toEqual([]);
    bus.down = false;
    await waitFor(() => bus.published.length === 1, 'the retry', 5000);
    expect(bus.published).toEqual(['lost']);

    bus.down = true;
    await on.revoke('left at close');
    service.close();
    bus.down = false;
    await new Promise((r) => setTimeout(r, 1500));
    expect(bus.published).toEqual(['lost']); // closed: no more tries
  });

  it('tries again a second later when a publish fails right after the reconnect', async () => {
    const bus = flakyBus();
    const on = serviceOn(bus);
    service = on.service;
    await on.revoke('lost');
    bus.reconnect(); // the publishing connection is not back yet
    await new Promise((r) => setTimeout(r, 100));
    expect(bus.published).toEqual([]);
    bus.down = false;
    await waitFor(() => bus.published.length === 1, 'the retry', 5000);
    expect(bus.published).toEqual(['lost']);
  });
});
