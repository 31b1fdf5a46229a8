import { setTimeout as sleep } from 'node:timers/promises';
import type { WebSocket } from 'ws';
import type { SessionService, SocketAuth } from '../auth/sessions';
import type { TokenService, Viewer } from '../auth/tokens';
import type { Logger } from '../logger';
import { cutShortAnswer, shuttingDown } from '../errors';

/** WebSocket close code for a missing, invalid, expired or revoked session (graphql-ws's Forbidden). */
export const CLOSE_FORBIDDEN = 4403;
/** WebSocket close code when the session cannot be checked now (the database is down): retry. */
const CLOSE_TRY_AGAIN_LATER = 1013;
/** WebSocket close code when this instance shuts down: the client reconnects (to another instance). */
export const CLOSE_GOING_AWAY = 1001;

/** How and why a socket closes once its running queries and mutations are answered. */
export interface Closing {
  code: number;
  reason: string;
}

/** What graphql-ws keeps per socket that this module reads and writes. */
export interface SocketExtra {
  socket: WebSocket;
  viewer?: Viewer;
  auth?: SocketAuth;
  /** Ids of the queries and mutations running on the socket (not subscriptions). */
  answering?: Set<string>;
  /** Those of `answering` that have begun to execute (the others wait their turn, `websocket.ts`). */
  begun?: Set<string>;
  /** Set while the socket waits for their answers to close (its session ended, its token expired, the instance stops). */
  closing?: Closing;
  /** Operations whose answer the socket has promised to carry (`holdForAnswer`): it does not close before. */
  holding?: Set<string>;
}

/** The close reason of a socket whose token expired (4403): a refresh fixes it. */
const TOKEN_EXPIRED = 'Token expired';

/** A settled promise's outcome, ignored (what the next check waits for is only that the last one ended). */
const IGNORE = (): void => undefined;

/** Longest a closing socket stays open for the answers of its running queries and mutations. */
const ANSWERS_GRACE_MS = 5000;

/**
 * Closes a socket with `code`: at once, or, while queries or mutations run on it, once they are
 * answered (`operationAnswered`), and within `graceMs` in any case. It takes no new operation
 * meanwhile (`websocket.ts`). So the `logOut` that ended a session over its own socket gets its
 * `true`, and a `refreshSession` running on a socket whose token expires or whose instance stops
 * gets its answer: lost, the rotation it made would leave the client presenting a used refresh
 * token next time, which ends the session (theft detection).
 */
export function closeAfterAnswers(extra: SocketExtra, code: number, reason: string, graceMs = ANSWERS_GRACE_MS): void {
  if (!extra.answering?.size) return extra.socket.close(code, reason);
  if (extra.closing && extra.closing.reason !== TOKEN_EXPIRED) return; // an expiry a refresh may yet undo gives way
  const closing: Closing = { code, reason };
  extra.closing = closing;
  // After the grace, only an answer the socket promised (`holdForAnswer`) keeps it open, as long again at most.
  const last = Date.now() + 2 * graceMs;
  const close = () => {
    if (extra.holding?.size && extra.closing === closing && Date.now() < last) return void setTimeout(close, 50).unref();
    closeAs(extra, closing);
  };
  setTimeout(close, graceMs).unref();
}

/** Closes the socket as `closing` says, unless it no longer closes that way (a refresh renewed it meanwhile). */
function closeAs(extra: SocketExtra, closing: Closing): void {
  if (extra.closing === closing) closeNow(extra, closing.code, closing.reason);
}

/**
 * Closes the socket. When the instance stops (1001), each query or mutation still running on it
 * (past the grace: waiting for a frozen database, say) is first answered SERVICE_UNAVAILABLE, an
 * `error` message of the protocol: the client learns it failed and sends it again elsewhere (a
 * send with its clientId), rather than guessing from the close. One that had begun may yet be
 * done; one still waiting its turn was not run and will not be (its socket is closed by then).
 */
function closeNow(extra: SocketExtra, code: number, reason: string): void {
  if (code === CLOSE_GOING_AWAY && extra.socket.readyState === extra.socket.OPEN) {
    const notRun = [shuttingDown().toJSON()];
    for (const id of extra.answering ?? []) extra.socket.send(JSON.stringify({ id, type: 'error', payload: extra.begun?.has(id) ? [cutShortAnswer] : notRun }));
  }
  extra.socket.close(code, reason);
}

/** The socket closes (4403) because its session ended, not because its token expired (which a refresh may undo). */
export function sessionEnded(extra: SocketExtra): boolean {
  return extra.closing?.code === CLOSE_FORBIDDEN && extra.closing.reason !== TOKEN_EXPIRED;
}

/**
 * `GraphQLContext.holdForAnswer` on a WebSocket: false once the socket is closing or closed;
 * otherwise true, and the socket stays open until operation `id` is answered.
 */
export function holdForAnswer(extra: SocketExtra, id: string): boolean {
  if (extra.socket.readyState !== extra.socket.OPEN) return false;
  (extra.holding ??= new Set()).add(id);
  return true;
}

/** Operation `id` on the socket has completed (graphql-ws `onComplete`: its `complete` goes out right after). */
export function operationAnswered(extra: SocketExtra, id: string): void {
  extra.holding?.delete(id);
  extra.begun?.delete(id);
  if (!extra.answering?.delete(id)) return; // a subscription
  const { closing } = extra;
  if (extra.answering.size === 0 && closing) setImmediate(closeAs, extra, closing);
}

/**
 * One authenticated socket: what `refreshSession` renews (its `SocketAuth`), and the timer that
 * closes it when its token expires. One object per socket, its methods shared.
 */
class Tracked implements SocketAuth {
  readonly sessionId: string;
  timer?: NodeJS.Timeout;

  constructor(
    readonly extra: SocketExtra,
    viewer: Viewer,
    /** Who tracks it. */
    readonly owner: SocketSessions,
  ) {
    this.sessionId = viewer.sessionId;
    this.renew(viewer);
  }

  renew(viewer: Viewer): void {
    this.extra.viewer = viewer;
    clearTimeout(this.timer);
    if (this.extra.closing?.reason === TOKEN_EXPIRED) this.extra.closing = undefined; // renewed by the refresh it waited for
    if (viewer.expiresAt) {
      // A socket lives no longer than its token, unless `refreshSession` renews it on the socket.
      this.timer = setTimeout(closeExpired, Math.min(Math.max(0, viewer.expiresAt - Date.now()), 2 ** 31 - 1), this.extra);
      this.timer.unref();
    }
  }
}

const closeExpired = (extra: SocketExtra) => closeAfterAnswers(extra, CLOSE_FORBIDDEN, TOKEN_EXPIRED);

/** The sockets being tracked, for the one close listener they share (`this` is the socket). */
const trackedSockets = new WeakMap<WebSocket, Tracked>();

function untrackOnClose(this: WebSocket): void {
  const tracked = trackedSockets.get(this);
  trackedSockets.delete(this);
  tracked?.owner.untrack(tracked);
}

/**
 * The authentication of graphql-ws sockets: checks the token and its session in `connection_init`
 * (4403 before `connection_ack` otherwise, with reason `Token expired` when a refresh would help),
 * closes a socket with 4403 when its token expires, renews it in place when `refreshSession` runs
 * on it, and closes every socket of a revoked session — told through `SessionService.onRevoked`
 * (pub/sub from other instances, or a check on this one that found the session ended: a request's,
 * or an operation's on one of its sockets), and checked against the database every `sweepMs` and
 * after a pub/sub reconnect, so a lost signal or an account deleted in SQL closes them within
 * `sweepMs`; and while signals may have been missed, before a heal delivers what it read from the
 * database (`settling`), so that what was sent after a revocation never reaches its sockets.
 */
export class SocketSessions {
  private readonly bySession = new Map<string, Set<Tracked>>();
  private readonly stopListening: Array<() => void>;
  private readonly sweeper: NodeJS.Timeout;
  /** How often pub/sub came back (revocation signals lost each time), and how many of those a completed sweep covers. */
  private losses = 0;
  private sweptLosses = 0;
  /** The check `settling` runs, if one does, and the one its callers wait for that has not begun yet (it begins after it). */
  private sweeping?: Promise<void>;
  private nextSweep?: Promise<void>;

  constructor(
    private readonly tokens: TokenService,
    private readonly sessions: SessionService,
    private readonly log: Logger,
    sweepMs: number,
  ) {
    this.stopListening = [
      sessions.onRevoked((sessionId) => this.closeSession(sessionId, 'Session ended')),
      sessions.onSignalsLost(() => {
        this.losses++;
        void this.sweep();
      }),
      sessions.onSettleRevocations(() => this.settling() ?? Promise.resolve()),
    ];
    this.sweeper = setInterval(() => void this.sweep(), sweepMs);
    this.sweeper.unref();
  }

  /** graphql-ws `onConnect`: true to acknowledge; false (after closing with a reason) to refuse. */
  async connect(connectionParams: Record<string, unknown> | undefined, extra: SocketExtra): Promise<boolean> {
    const params = connectionParams ?? {};
    // `{ authorization }` as the README says (Apollo Client); also `{ headers: { Authorization } }` (graphql-tools executors).
    const headers = (typeof params.headers === 'object' && params.headers ? params.headers : {}) as Record<string, unknown>;
    const checked = this.tokens.checkAuthorization(params.authorization ?? params.Authorization ?? headers.authorization ?? headers.Authorization);
    if (!checked || 'refused' in checked) {
      if (checked?.refused === 'expired') extra.socket.close(CLOSE_FORBIDDEN, TOKEN_EXPIRED);
      return false; // graphql-ws closes with 4403 Forbidden
    }
    const { viewer } = checked;
    let live: boolean;
    try {
      live = await this.sessions.isLive(viewer);
    } catch (err) {
      // The database is unreachable: not the client's fault, and nothing internal in the close reason.
      this.log.warn({ err: (err as Error).message }, 'could not check a session on connect');
      extra.socket.close(CLOSE_TRY_AGAIN_LATER, 'Try again later');
      return false;
    }
    if (!live) {
      extra.socket.close(CLOSE_FORBIDDEN, 'Session ended');
      return false;
    }
    if (extra.socket.readyState !== extra.socket.OPEN) return false; // gone while the database answered
    this.track(viewer, extra);
    return true;
  }

  /** Closes every socket of the session on this instance with 4403 (see `closeAfterAnswers`). */
  closeSession(sessionId: string, reason: string): void {
    for (const tracked of this.bySession.get(sessionId) ?? []) closeAfterAnswers(tracked.extra, CLOSE_FORBIDDEN, reason);
  }

  /**
   * The instance stops: closes every authenticated socket with 1001 once its running queries and
   * mutations are answered; resolves when every one has begun to close, within `graceMs`.
   */
  async closeAll(graceMs: number): Promise<void> {
    const open = [...this.bySession.values()].flatMap((set) => [...set]).map((tracked) => tracked.extra);
    for (const extra of open) closeAfterAnswers(extra, CLOSE_GOING_AWAY, 'Going away', graceMs);
    const isOpen = (extra: SocketExtra) => extra.socket.readyState === extra.socket.OPEN;
    const deadline = Date.now() + graceMs;
    const last = deadline + graceMs; // for answers the sockets promised (`holdForAnswer`)
    while (open.some(isOpen) && (Date.now() < deadline || (Date.now() < last && open.some((extra) => isOpen(extra) && extra.holding?.size)))) await sleep(20);
    // The rest: each with the code it was closing with (4403 for an ended session), else 1001.
    for (const extra of open.filter(isOpen)) closeNow(extra, extra.closing?.code ?? CLOSE_GOING_AWAY, extra.closing?.reason ?? 'Going away');
  }

  /** Closes the sockets whose session no longer stands in the database. */
  async sweep(): Promise<void> {
    try {
      await this.closeEnded();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not check the sessions of open sockets');
    }
  }

  /**
   * `SessionService.settleRevocations` here: while revocation signals may have been missed (pub/sub
   * is down, or came back and no sweep has completed since), a sweep that begins after the call,
   * shared by every caller until it begins, which rejects when the sessions cannot be read;
   * undefined otherwise (nothing to wait for).
   */
  settling(): Promise<void> | undefined {
    if (this.sessions.signalsArrive && this.sweptLosses === this.losses) return undefined;
    // One check at a time: those who ask while one runs share the next, begun once it ends (an
    // outage's every operation and heal cost the database one read of the sessions at a time).
    return (this.nextSweep ??= (this.sweeping ?? Promise.resolve()).then(IGNORE, IGNORE).then(() => {
      this.nextSweep = undefined;
      const sweep: Promise<void> = this.closeEnded().finally(() => {
        if (this.sweeping === sweep) this.sweeping = undefined;
      });
      this.sweeping = sweep;
      return sweep;
    }));
  }

  private async closeEnded(): Promise<void> {
    const losses = this.losses;
    for (const sessionId of await this.sessions.ended([...this.bySession.keys()])) this.closeSession(sessionId, 'Session ended');
    if (this.sessions.signalsArrive) this.sweptLosses = Math.max(this.sweptLosses, losses);
  }

  dispose(): void {
    clearInterval(this.sweeper);
    for (const stop of this.stopListening) stop();
  }

  private track(viewer: Viewer, extra: SocketExtra): void {
    const tracked = new Tracked(extra, viewer, this);
    trackedSockets.set(extra.socket, tracked);
    const set = this.bySession.get(viewer.sessionId) ?? new Set<Tracked>();
    this.bySession.set(viewer.sessionId, set.add(tracked));
    extra.auth = tracked;
    extra.socket.on('close', untrackOnClose); // a WebSocket closes once
  }

  /** A tracked socket closed. */
  untrack(tracked: Tracked): void {
    clearTimeout(tracked.timer);
    const set = this.bySession.get(tracked.sessionId);
    if (!set?.delete(tracked)) return;
    if (!set.size) this.bySession.delete(tracked.sessionId);
  }
}
