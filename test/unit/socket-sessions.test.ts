// SocketSessions: what a WebSocket hears on connect when its session is refused, expired, or cannot
// be checked, and that a revocation closes only that session's sockets.
import { EventEmitter } from 'node:events';
import type { SessionService } from '../../src/auth/sessions';
import { TokenService } from '../../src/auth/tokens';
import { SocketSessions, type SocketExtra } from '../../src/http/socket-sessions';
import { shutdownPlan } from '../../src/http/transport';
import { createLogger } from '../../src/logger';
import { waitFor } from '../support/fakes';

const tokens = new TokenService('a-secret-long-enough-for-hs256-signing-here', 60);
const log = createLogger('silent');

/** A socket that records how it was closed. */
function fakeSocket() {
  const socket = Object.assign(new EventEmitter(), {
    OPEN: 1,
    readyState: 1,
    closed: undefined as undefined | { code: number; reason: string },
    close(code: number, reason: string) {
      socket.closed ??= { code, reason };
      socket.readyState = 3;
      socket.emit('close');
    },
  });
  return socket;
}

function sessionsWith(isLive: () => Promise<boolean>) {
  let revoked: (id: string) => void = () => undefined;
  let lost: () => void = () => undefined;
  let endedNow: string[] = [];
  let settle: () => Promise<void> = async () => undefined;
  const service = {
    isLive,
    ended: async () => endedNow,
    signalsArrive: true,
    onSettleRevocations: (settler: () => Promise<void>) => {
      settle = settler;
      return () => undefined;
    },
    onRevoked: (listener: (id: string) => void) => {
      revoked = listener;
      return () => undefined;
    },
    onSignalsLost: (listener: () => void) => {
      lost = listener;
      return () => undefined;
    },
  } as unknown as SessionService;
  return { service, revoke: (id: string) => revoked(id), signalsLost: () => lost(), setEnded: (ids: string[]) => (endedNow = ids), settle: () => settle() };
}

async function connect(sockets: SocketSessions, token: string | undefined) {
  const socket = fakeSocket();
  const ok = await sockets.connect(token ? { authorization: `Bearer ${token}` } : {}, { socket } as unknown as SocketExtra);
  return { ok, socket };
}

describe('SocketSessions', () => {
  let sockets: SocketSessions;
  afterEach(() => sockets?.dispose());

  it('acknowledges a live session and closes only the revoked session\'s sockets with 4403', async () => {
    const { service, revoke } = sessionsWith(async () => true);
    sockets = new SocketSessions(tokens, service, log, 60_000);
    const a = await connect(sockets, tokens.issue('u1', 's1').token);
    const b = await connect(sockets, tokens.issue('u2', 's2').token);
    expect([a.ok, b.ok]).toEqual([true, true]);
    revoke('s1');
    expect(a.socket.closed).toEqual({ code: 4403, reason: 'Session ended' });
    expect(b.socket.closed).toBeUndefined();
  });

  it('checks its sockets\' sessions against the database when revocation signals may have been lost', async () => {
    const { service, signalsLost, setEnded } = sessionsWith(async () => true);
    sockets = new SocketSessions(tokens, service, log, 60_000);
    const a = await connect(sockets, tokens.issue('u1', 's1').token);
    const b = await connect(sockets, tokens.issue('u2', 's2').token);
    setEnded(['s2']); // revoked while this instance's pub/sub was away
    signalsLost();
    await new Promise((r) => setTimeout(r, 10));
    expect(a.socket.closed).toBeUndefined();
    expect(b.socket.closed).toEqual({ code: 4403, reason: 'Session ended' });
  });

  it('checks them before a heal delivers, only while signals may have been missed: a check begun after the callers called, one at a time, shared by those who wait for it', async () => {
    const asked: string[][] = [];
    const { service, signalsLost, settle } = sessionsWith(async () => true);
    let endedNow: string[] = [];
    (service as unknown as { ended(ids: string[]): Promise<string[]> }).ended = async (ids) => (asked.push(ids), endedNow);
    const pubsub = service as unknown as { signalsArrive: boolean };
    sockets = new SocketSessions(tokens, service, log, 60_000);
    const a = await connect(sockets, tokens.issue('u1', 's1').token);
    const b = await connect(sockets, tokens.issue('u2', 's2').token);
    expect(sockets.settling()).toBeUndefined(); // signals arrive, none was lost
    await settle();
    expect(asked).toEqual([]);
    pubsub.signalsArrive = false; // Redis is down
    const both = [sockets.settling(), settle()];
    endedNow = ['s2']; // ended after the callers read, before the check begins: it sees it
    await Promise.all(both);
    expect(asked).toEqual([['s1', 's2']]);
    expect(b.socket.closed).toEqual({ code: 4403, reason: 'Session ended' });
    expect(a.socket.closed).toBeUndefined();
    await settle();
    expect(asked).toHaveLength(2); // still down: every heal checks
    pubsub.signalsArrive = true;
    signalsLost(); // back: its own sweep covers what was lost
    await new Promise((r) => setTimeout(r, 10));
    expect(asked).toHaveLength(3);
    expect(sockets.settling()).toBeUndefined();
    // A check that fails rejects: the heal keeps its position and retries.
    pubsub.signalsArrive = false;
    (service as unknown as { ended(ids: string[]): Promise<string[]> }).ended = async () => {
      throw new Error('database down');
    };
    await expect(settle()).rejects.toThrow('database down');
    // One check at a time: those asking while one runs share the next, begun once it has ended.
    const reads: Array<() => void> = [];
    (service as unknown as { ended(ids: string[]): Promise<string[]> }).ended = () => new Promise((resolve) => reads.push(() => resolve([])));
    const running = settle();
    await new Promise((r) => setTimeout(r, 5));
    const waiting = [settle(), settle(), sockets.settling()];
    await new Promise((r) => setTimeout(r, 5));
    expect(reads).toHaveLength(1); // the next waits for the running one
    reads[0]();
    await running;
    await new Promise((r) => setTimeout(r, 5));
    expect(reads).toHaveLength(2); // one for the three who waited
    reads[1]();
    await Promise.all(waiting);
  });

  it('stops tracking a socket once it closes: its session is no longer checked', async () => {
    const asked: string[][] = [];
    const { service, signalsLost } = sessionsWith(async () => true);
    (service as unknown as { ended(ids: string[]): Promise<string[]> }).ended = async (ids) => (asked.push(ids), []);
    sockets = new SocketSessions(tokens, service, log, 60_000);
    const a = await connect(sockets, tokens.issue('u1', 's1').token);
    await connect(sockets, tokens.issue('u2', 's2').token);
    a.socket.close(1000, 'bye');
    signalsLost();
    await waitFor(() => asked.length > 0, 'the sessions to be asked about');
    expect(asked).toEqual([['s2']]);
  });

  it('refuses an ended session, says Token expired for an expired token, and refuses no token at all', async () => {
    sockets = new SocketSessions(tokens, sessionsWith(async () => false).service, log, 60_000);
    const ended = await connect(sockets, tokens.issue('u1', 's1').token);
    expect(ended).toMatchObject({ ok: false, socket: { closed: { code: 4403, reason: 'Session ended' } } });
    const expired = await connect(sockets, new TokenService('a-secret-long-enough-for-hs256-signing-here', -10).issue('u1', 's1').token);
    expect(expired).toMatchObject({ ok: false, socket: { closed: { code: 4403, reason: 'Token expired' } } });
    expect((await connect(sockets, undefined)).ok).toBe(false);
  });

  it('asks the client to come back later (1013) when the session cannot be checked, with nothing internal in the reason', async () => {
    sockets = new SocketSessions(tokens, sessionsWith(async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'))).service, log, 60_000);
    const down = await connect(sockets, tokens.issue('u1', 's1').token);
    expect(down).toMatchObject({ ok: false, socket: { closed: { code: 1013, reason: 'Try again later' } } });
  });
});

describe('shutdownPlan', () => {
  it.each([100, 1000, 2000, 2500, 4000, 10_000, 600_000])('leaves a stop of %i ms time to answer what still waits, and a reserve', (timeoutMs) => {
    const { socketAnswersMs, drainMs } = shutdownPlan(timeoutMs);
    expect(socketAnswersMs).toBeGreaterThan(0);
    expect(socketAnswersMs).toBeLessThanOrEqual(2000);
    expect(drainMs).toBeGreaterThanOrEqual(0);
    expect(timeoutMs - socketAnswersMs - drainMs).toBeGreaterThanOrEqual(Math.min(1000, timeoutMs * 0.15) - 1); // the reserve
  });
  it('keeps the windows of the default stop: 2 s for the sockets, 7 s for the HTTP requests', () => {
    expect(shutdownPlan(10_000)).toEqual({ socketAnswersMs: 2000, drainMs: 7000 });
  });
});
