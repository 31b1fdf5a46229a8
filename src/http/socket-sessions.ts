import type { WebSocket } from 'ws';
import type { SessionService, SocketAuth } from '../auth/sessions';
import type { TokenService, Viewer } from '../auth/tokens';
import type { Logger } from '../logger';

/** WebSocket close code for a missing, invalid, expired or revoked session (graphql-ws's Forbidden). */
export const CLOSE_FORBIDDEN = 4403;
/** WebSocket close code when the session cannot be checked now (the database is down): retry. */
const CLOSE_TRY_AGAIN_LATER = 1013;

/** What graphql-ws keeps per socket that this module reads and writes. */
export interface SocketExtra {
  socket: WebSocket;
  viewer?: Viewer;
  auth?: SocketAuth;
  /** Ids of the queries and mutations running on the socket (not subscriptions). */
  answering?: Set<string>;
  /** Why the socket closes once they are answered (its session ended meanwhile). */
  closing?: string;
}

/** Longest a socket of an ended session stays open for the answers of its running queries and mutations. */
const ANSWERS_GRACE_MS = 5000;

/**
 * Closes a socket with 4403: at once, or, while queries or mutations run on it (the `logOut` that
 * ended its session, sent on it), once they are answered (`operationAnswered`) — so that `logOut`
 * over a WebSocket gets its `true` — and within `ANSWERS_GRACE_MS` in any case. It takes no new
 * operation meanwhile (`websocket.ts`).
 */
function closeForbidden(extra: SocketExtra, reason: string): void {
  if (!extra.answering?.size) return extra.socket.close(CLOSE_FORBIDDEN, reason);
  if (extra.closing) return;
  extra.closing = reason;
  setTimeout(() => extra.socket.close(CLOSE_FORBIDDEN, reason), ANSWERS_GRACE_MS).unref();
}

/** Operation `id` on the socket has completed (graphql-ws `onComplete`: its `complete` goes out right after). */
export function operationAnswered(extra: SocketExtra, id: string): void {
  if (!extra.answering?.delete(id)) return; // a subscription
  const reason = extra.closing;
  if (extra.answering.size === 0 && reason) setImmediate(() => extra.socket.close(CLOSE_FORBIDDEN, reason));
}

/**
 * One authenticated socket: what `refreshSession` renews (its `SocketAuth`), and the timer that
 * closes it when its token expires. One object per socket, its methods shared.
 */
class Tracked implements SocketAuth {
  readonly sessionId: string;
  timer?: NodeJS.Timeout;

  constructor(readonly extra: SocketExtra, viewer: Viewer) {
    this.sessionId = viewer.sessionId;
    this.renew(viewer);
  }

  renew(viewer: Viewer): void {
    this.extra.viewer = viewer;
    clearTimeout(this.timer);
    if (viewer.expiresAt) {
      // A socket lives no longer than its token, unless `refreshSession` renews it on the socket.
      this.timer = setTimeout(closeExpired, Math.min(Math.max(0, viewer.expiresAt - Date.now()), 2 ** 31 - 1), this.extra.socket);
      this.timer.unref();
    }
  }
}

const closeExpired = (socket: WebSocket) => socket.close(CLOSE_FORBIDDEN, 'Token expired');

/**
 * The authentication of graphql-ws sockets: checks the token and its session in `connection_init`
 * (4403 before `connection_ack` otherwise, with reason `Token expired` when a refresh would help),
 * closes a socket with 4403 when its token expires, renews it in place when `refreshSession` runs
 * on it, and closes every socket of a revoked session — told through `SessionService.onRevoked`
 * (pub/sub from other instances), and checked against the database every `sweepMs` and after a
 * pub/sub reconnect, so a lost signal or an account deleted in SQL closes them within `sweepMs`.
 */
export class SocketSessions {
  private readonly bySession = new Map<string, Set<Tracked>>();
  private readonly stopListening: Array<() => void>;
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly tokens: TokenService,
    private readonly sessions: SessionService,
    private readonly log: Logger,
    sweepMs: number,
  ) {
    this.stopListening = [
      sessions.onRevoked((sessionId) => this.closeSession(sessionId, 'Session ended')),
      sessions.onSignalsLost(() => void this.sweep()),
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
      if (checked?.refused === 'expired') extra.socket.close(CLOSE_FORBIDDEN, 'Token expired');
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

  /** Closes every socket of the session on this instance with 4403 (see `closeForbidden`). */
  closeSession(sessionId: string, reason: string): void {
    for (const tracked of this.bySession.get(sessionId) ?? []) closeForbidden(tracked.extra, reason);
  }

  /** Closes the sockets whose session no longer stands in the database. */
  async sweep(): Promise<void> {
    try {
      for (const sessionId of await this.sessions.ended([...this.bySession.keys()])) this.closeSession(sessionId, 'Session ended');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not check the sessions of open sockets');
    }
  }

  dispose(): void {
    clearInterval(this.sweeper);
    for (const stop of this.stopListening) stop();
  }

  private track(viewer: Viewer, extra: SocketExtra): void {
    const tracked = new Tracked(extra, viewer);
    const set = this.bySession.get(viewer.sessionId) ?? new Set<Tracked>();
    this.bySession.set(viewer.sessionId, set.add(tracked));
    extra.auth = tracked;
    extra.socket.on('close', () => this.untrack(tracked)); // a WebSocket closes once
  }

  private untrack(tracked: Tracked): void {
    clearTimeout(tracked.timer);
    const set = this.bySession.get(tracked.sessionId);
    if (!set?.delete(tracked)) return;
    if (!set.size) this.bySession.delete(tracked.sessionId);
  }
}
