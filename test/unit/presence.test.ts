// Typing and presence (docs/guarantees.md, guarantee 11) with small fakes: the store contract on
// both implementations (memory on a fake clock, Redis on the real one), the typing throttle, and
// presence flips of several instances sharing one store.
import Redis from 'ioredis';
import type { DataSource } from 'typeorm';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/logger';
import { MemoryEphemeralStore } from '../../src/presence/memory-store';
import { PresenceService } from '../../src/presence/presence-service';
import { RedisEphemeralStore } from '../../src/presence/redis-store';
import type { EphemeralStore } from '../../src/presence/store';
import { TypingService } from '../../src/presence/typing-service';
import { roomTopic, type RoomSignal } from '../../src/pubsub';
import { MemoryPubSub } from '../../src/pubsub/memory';
import { waitFor } from '../support/harness';

const log = createLogger('silent');
const ROOM = '00000000-0000-4000-8000-000000000001';
const OTHER_ROOM = '00000000-0000-4000-8000-000000000002';
let serial = 0;
// Its own keys: the servers of other test files sweep the shared Redis too.
const PREFIX = `test-${process.pid}-${Date.now()}:`;
const userId = () => `00000000-0000-4000-9000-${String(++serial).padStart(12, '0')}`;

/** A clock the test moves. */
function fakeClock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

/** A store that counts the calls reaching it. */
function counting(store: EphemeralStore) {
  const calls: string[] = [];
  const proxy = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? (...args: unknown[]) => (calls.push(String(name)), value.apply(target, args)) : value;
    },
  });
  return { store: proxy, calls };
}

/** A DataSource just big enough for the services: `members` decides membership; memberships list rooms. */
function fakeDb(members: Map<string, string[]>): DataSource & { lookups: number } {
  const db = {
    lookups: 0,
    manager: {
      getRepository: () => ({
        findOneBy: async ({ roomId, userId: user }: { roomId: string; userId: string }) => {
          db.lookups++;
          return members.get(roomId)?.includes(user) ? { roomId, userId: user, role: 'MEMBER' } : null;
        },
      }),
    },
    query: async (_sql: string, [user]: [string]) =>
      [...members].filter(([, users]) => users.includes(user)).map(([roomId]) => ({ room_id: roomId })),
  };
  return db as unknown as DataSource & { lookups: number };
}

/** Every signal published on the rooms' topics, with its room. */
async function recordSignals(pubsub: MemoryPubSub, rooms: string[]): Promise<Array<RoomSignal & { room: string }>> {
  const seen: Array<RoomSignal & { room: string }> = [];
  for (const room of rooms) await pubsub.subscribe(roomTopic(room), (s: RoomSignal) => seen.push({ ...s, room }));
  return seen;
}

describe.each([
  ['memory', () => ({ store: new MemoryEphemeralStore(), short: 40 })],
  ['redis', () => ({ store: new RedisEphemeralStore(process.env.TEST_REDIS_URL!, log, PREFIX), short: 40 })],
])('the %s EphemeralStore', (_name, make) => {
  let store: EphemeralStore;
  let short: number;
  beforeEach(() => ({ store, short } = make()));
  afterEach(() => store.close());

  it('reports a typing flip once: started, refreshed (no flip), stopped, stopped again (no flip)', async () => {
    const user = userId();
    expect(await store.startTyping(ROOM, user, 60_000)).toBe(true);
    expect(await store.startTyping(ROOM, user, 60_000)).toBe(false);
    expect(await store.expireTyping(ROOM, user)).toBeGreaterThan(0);
    expect(await store.stopTyping(ROOM, user)).toBe(true);
    expect(await store.stopTyping(ROOM, user)).toBe(false);
    expect(await store.expireTyping(ROOM, user)).toBe('gone');
  });

  it('expires typing to exactly one caller, by timer or by sweep', async () => {
    const [one, two] = [userId(), userId()];
    await store.startTyping(ROOM, one, short);
    await store.startTyping(ROOM, two, short);
    // The deadline passes on the store's clock; each typing is then claimed once, whoever asks.
    await waitFor(async () => (await store.expireTyping(ROOM, one)) === 'expired', 5000);
    expect(await store.expireTyping(ROOM, one)).toBe('gone');
    const swept = await waitFor(async () => {
      const due = await store.sweepTyping(100);
      return due.length > 0 && due;
    }, 5000);
    expect(swept).toContainEqual({ roomId: ROOM, userId: two });
    expect(swept).not.toContainEqual({ roomId: ROOM, userId: one });
    expect(await store.sweepTyping(100)).not.toContainEqual({ roomId: ROOM, userId: two });
  });

  it('holds a user online while any instance holds them, and answers online() in one call', async () => {
    const [ada, bob] = [userId(), userId()];
    expect(await store.holdPresence('A', [ada], 60_000)).toEqual([ada]);
    expect(await store.holdPresence('B', [ada, bob], 60_000)).toEqual([bob]);
    expect(await store.online([ada, bob, userId()])).toEqual(new Set([ada, bob]));
    expect(await store.releasePresence('A', ada)).toBe(false); // B still holds her
    expect(await store.online([ada])).toEqual(new Set([ada]));
    expect(await store.releasePresence('B', ada)).toBe(true);
    expect(await store.releasePresence('B', ada)).toBe(false);
    expect(await store.online([ada, bob])).toEqual(new Set([bob]));
  });

  it('takes offline, once, a user whose every holder stopped renewing (an instance that died)', async () => {
    const [ada, bob] = [userId(), userId()];
    await store.holdPresence('dead', [ada, bob], short);
    await store.holdPresence('alive', [bob], 60_000);
    const gone = await waitFor(async () => {
      const due = await store.sweepPresence(1000);
      return due.includes(ada) && due;
    }, 5000);
    expect(gone).not.toContain(bob);
    expect(await store.sweepPresence(1000)).not.toContain(ada);
    expect(await store.online([ada, bob])).toEqual(new Set([bob]));
    expect(await store.holdPresence('alive', [ada], 60_000)).toEqual([ada]); // a flip again
  });
});

describe('the Redis EphemeralStore', () => {
  it('stores nothing for a user once they stopped typing and went offline (keys do not linger)', async () => {
    const store = new RedisEphemeralStore(process.env.TEST_REDIS_URL!, log, PREFIX);
    const redis = new Redis(process.env.TEST_REDIS_URL!);
    try {
      const user = userId();
      await store.startTyping(ROOM, user, 60_000);
      await store.holdPresence('A', [user], 60_000);
      expect(await redis.pttl(`${PREFIX}presence:holders:${user}`)).toBeGreaterThan(0); // expires by itself too
      await store.stopTyping(ROOM, user);
      await store.releasePresence('A', user);
      expect(await redis.zscore(`${PREFIX}typing:deadlines`, `${ROOM}:${user}`)).toBeNull();
      expect(await redis.zscore(`${PREFIX}presence:online`, user)).toBeNull();
      expect(await redis.exists(`${PREFIX}presence:holders:${user}`)).toBe(0);
    } finally {
      redis.disconnect();
      await store.close();
    }
  });
});

describe('TypingService', () => {
  const ttlMs = 5000;
  function setUp(members: string[]) {
    const clock = fakeClock();
    const { store, calls } = counting(new MemoryEphemeralStore(clock.now));
    const pubsub = new MemoryPubSub();
    const db = fakeDb(new Map([[ROOM, members]]));
    const typing = new TypingService({ db, store, pubsub, log, ttlMs, now: clock.now });
    return { clock, calls, pubsub, db, typing };
  }

  it('answers setTyping(true) repeated within a second from memory: no database, no store, no publish', async () => {
    const ada = userId();
    const { clock, calls, pubsub, db, typing } = setUp([ada]);
    const seen = await recordSignals(pubsub, [ROOM]);
    try {
      await Promise.all([1, 2, 3].map(() => typing.set({ id: ada, sessionId: 's' }, ROOM, true))); // concurrent repeats share one answer
      for (let i = 0; i < 5; i++) {
        clock.advance(150);
        expect(await typing.set({ id: ada, sessionId: 's' }, ROOM, true)).toBe(true);
      }
      // A start reads the membership again once it has written the typing (`TypingService.start`).
      expect({ lookups: db.lookups, calls }).toEqual({ lookups: 2, calls: ['startTyping'] });
      clock.advance(1000); // past the window: one refresh reaches the store, and emits nothing new
      await typing.set({ id: ada, sessionId: 's' }, ROOM, true);
      expect({ lookups: db.lookups, calls }).toEqual({ lookups: 3, calls: ['startTyping', 'startTyping'] });
      await typing.set({ id: ada, sessionId: 's' }, ROOM, false);
      expect(seen).toEqual([
        { kind: 'typing', room: ROOM, userId: ada, typing: true },
        { kind: 'typing', room: ROOM, userId: ada, typing: false },
      ]);
    } finally {
      typing.close();
    }
  });

  it('answers FORBIDDEN to a non-member, a malformed room id and a missing room alike, storing nothing', async () => {
    const [ada, eve] = [userId(), userId()];
    const { calls, typing } = setUp([ada]);
    try {
      for (const [viewer, room] of [[eve, ROOM], [ada, 'not-a-room'], [ada, OTHER_ROOM]] as const) {
        for (const value of [true, false]) {
          await expect(typing.set({ id: viewer, sessionId: 's' }, room, value)).rejects.toMatchObject({ extensions: { code: 'FORBIDDEN' } });
        }
      }
      await expect(typing.set(null, ROOM, true)).rejects.toMatchObject({ extensions: { code: 'UNAUTHENTICATED' } });
      expect(calls).toEqual([]);
    } finally {
      typing.close();
    }
  });

  it('keeps no typing written after a removal ended it (a setTyping that passed its check before the removal): FORBIDDEN, no start told', async () => {
    const ada = userId();
    const members = [ada];
    const { pubsub, typing } = setUp(members);
    const store = (typing as unknown as { options: { store: EphemeralStore } }).options.store;
    const write = store.startTyping.bind(store);
    // The removal lands between the check and the write: the membership goes, then its `end` runs.
    store.startTyping = async (...args) => {
      members.splice(0);
      await typing.end(ROOM, ada);
      return write(...args);
    };
    const seen = await recordSignals(pubsub, [ROOM]);
    try {
      await expect(typing.set({ id: ada, sessionId: 's' }, ROOM, true)).rejects.toMatchObject({ extensions: { code: 'FORBIDDEN' } });
      expect(await store.stopTyping(ROOM, ada)).toBe(false); // nothing left to expire later
      expect(seen).toEqual([]);
    } finally {
      typing.close();
    }
  });

  it('answers SERVICE_UNAVAILABLE when the store is unreachable', async () => {
    const ada = userId();
    const clock = fakeClock();
    const store = new MemoryEphemeralStore(clock.now);
    store.startTyping = () => Promise.reject(new Error('connection refused'));
    const typing = new TypingService({ db: fakeDb(new Map([[ROOM, [ada]]])), store, pubsub: new MemoryPubSub(), log, ttlMs, now: clock.now });
    try {
      await expect(typing.set({ id: ada, sessionId: 's' }, ROOM, true)).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
    } finally {
      typing.close();
    }
  });
});

describe('PresenceService', () => {
  /** Two instances on one store, as two servers on one Redis. */
  function setUp(members: Map<string, string[]>) {
    const store = new MemoryEphemeralStore();
    const pubsub = new MemoryPubSub();
    const db = fakeDb(members);
    const instance = (instanceId: string) => new PresenceService({ db, store, pubsub, log, instanceId, ttlMs: 60_000 });
    return { store, pubsub, a: instance('A'), b: instance('B') };
  }
  const presenceOf = (seen: Array<RoomSignal & { room: string }>, user: string) =>
    seen.filter((s) => s.kind === 'presence' && s.userId === user).map((s) => s.kind === 'presence' && `${s.room === ROOM ? 'room' : 'other'}:${s.online}`);

  it("flips online at a user's first socket on any instance and offline after their last, in each of their rooms", async () => {
    const [ada, bob] = [userId(), userId()];
    const { pubsub, a, b } = setUp(new Map([[ROOM, [ada, bob]], [OTHER_ROOM, [ada]]]));
    const seen = await recordSignals(pubsub, [ROOM, OTHER_ROOM]);
    try {
      const closeOnA = a.connect(ada);
      const secondOnA = a.connect(ada);
      const onB = b.connect(ada);
      await waitFor(() => presenceOf(seen, ada).length === 2);
      expect(await b.online([ada, bob])).toEqual(new Set([ada]));
      closeOnA();
      closeOnA(); // twice is once
      secondOnA();
      await a.close(); // waits for the release in flight
      expect(await b.online([ada])).toEqual(new Set([ada])); // B still holds a socket
      onB();
      await b.close();
      expect(await a.online([ada])).toEqual(new Set());
      expect(presenceOf(seen, ada).sort()).toEqual(['other:false', 'other:true', 'room:false', 'room:true']);
      expect(presenceOf(seen, ada).filter((s) => s && s.startsWith('room'))).toEqual(['room:true', 'room:false']);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('answers SERVICE_UNAVAILABLE when the store cannot say who is online (before: INTERNAL_SERVER_ERROR, logged with its stack)', async () => {
    const { store, a, b } = setUp(new Map([[ROOM, [userId()]]]));
    store.online = () => Promise.reject(new Error('Command timed out'));
    try {
      await expect(a.online([userId()])).rejects.toMatchObject({ extensions: { code: 'SERVICE_UNAVAILABLE' } });
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe('configuration', () => {
  it('defaults typing to 5 s and presence to 20 s, and reads both', () => {
    const base = { JWT_SECRET: 's'.repeat(32), DATA_DIR: '.data-unused' };
    expect(loadConfig(base)).toMatchObject({ typingTtlMs: 5000, presenceTtlMs: 20_000 });
    expect(loadConfig({ ...base, TYPING_TTL_MS: '800', PRESENCE_TTL_MS: '1500' })).toMatchObject({ typingTtlMs: 800, presenceTtlMs: 1500 });
    expect(() => loadConfig({ ...base, TYPING_TTL_MS: '10' })).toThrow(/TYPING_TTL_MS/);
    expect(() => loadConfig({ ...base, PRESENCE_TTL_MS: 'soon' })).toThrow(/PRESENCE_TTL_MS/);
  });
});
