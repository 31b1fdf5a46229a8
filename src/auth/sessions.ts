import { createHash, randomBytes } from 'node:crypto';
import type { DataSource, EntityManager } from 'typeorm';
import { UserEntity } from '../db/entities';
import { badUserInput, unauthenticated } from '../errors';
import type { Logger } from '../logger';
import { sessionRevokedTopic, type PubSub } from '../pubsub';
import type { TokenService, Viewer } from './tokens';

/** What signing in or refreshing hands the client. */
export interface SessionTokens {
  token: string;
  expiresAt: Date;
  refreshToken: string;
}

/** An authenticated WebSocket, as the operation running on it sees it: `refreshSession` renews it in place. */
export interface SocketAuth {
  readonly sessionId: string;
  /** Authenticates the socket as `viewer` from now on (a new expiry; its subscriptions untouched). */
  renew(viewer: Viewer): void;
}

/** The longest refresh token accepted as input (they are 43 characters). */
const MAX_REFRESH_TOKEN_LENGTH = 200;

const hashOf = (refreshToken: string) => createHash('sha256').update(refreshToken, 'utf8').digest();

/**
 * Sessions: short access tokens carrying a session id, and rotating refresh tokens stored as
 * sha-256 hashes. `refresh` rotates (the used token keeps its row); presenting a used token again
 * revokes the whole session (theft detection). A revoked or deleted session fails every check at
 * once (`isLive` reads the database), and `onRevoked` listeners on every instance hear of it
 * through pub/sub to close its sockets.
 */
export class SessionService {
  private readonly revokedListeners = new Set<(sessionId: string) => void>();
  private unsubscribe?: () => Promise<void>;

  constructor(
    private readonly db: DataSource,
    private readonly tokens: TokenService,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly refreshTtlSeconds: number,
  ) {}

  /** Listens for revocations made on other instances. */
  async start(): Promise<void> {
    this.unsubscribe = await this.pubsub.subscribe(sessionRevokedTopic, ({ sessionId }) => this.announce(sessionId));
  }

  async close(): Promise<void> {
    this.revokedListeners.clear();
    await this.unsubscribe?.().catch(() => undefined);
  }

  /** Calls `listener` with the id of each session revoked here or on another instance. */
  onRevoked(listener: (sessionId: string) => void): () => void {
    this.revokedListeners.add(listener);
    return () => this.revokedListeners.delete(listener);
  }

  /** Starts a session for the user (sign-up, log-in), inside the caller's transaction when given. */
  async create(userId: string, manager: EntityManager = this.db.manager): Promise<SessionTokens> {
    const [{ id }] = (await manager.query(`INSERT INTO sessions (user_id) VALUES ($1) RETURNING id`, [userId])) as Array<{ id: string }>;
    const refreshToken = await this.insertRefreshToken(manager, id);
    return { ...this.tokens.issue(userId, id), refreshToken };
  }

  /**
   * Rotates a refresh token: a new access token and a new refresh token; the one given stops
   * working. A token already used revokes its session (and is UNAUTHENTICATED, as are unknown,
   * expired and revoked ones). Sent over a WebSocket of the same session, renews that socket.
   */
  async refresh(raw: unknown, socket?: SocketAuth): Promise<SessionTokens & { user: UserEntity }> {
    const presented = parseRefreshToken(raw);
    const outcome = await this.db.transaction(async (m) => {
      const rows = (await m.query(
        `SELECT rt.session_id, rt.used_at, rt.expires_at < now() AS expired, s.user_id, s.revoked_at
           FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id
          WHERE rt.token_hash = $1 FOR UPDATE OF rt, s`,
        [hashOf(presented)],
      )) as Array<{ session_id: string; used_at: Date | null; expired: boolean; user_id: string; revoked_at: Date | null }>;
      const row = rows[0];
      if (!row || row.revoked_at || row.expired) return { kind: 'refused' as const };
      if (row.used_at) {
        await markRevoked(m, row.session_id, 'refresh token reused');
        return { kind: 'reused' as const, sessionId: row.session_id };
      }
      await m.query(`UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1`, [hashOf(presented)]);
      await m.query(`DELETE FROM refresh_tokens WHERE session_id = $1 AND expires_at < now()`, [row.session_id]);
      await m.query(`UPDATE sessions SET refreshed_at = now() WHERE id = $1`, [row.session_id]);
      const refreshToken = await this.insertRefreshToken(m, row.session_id);
      return { kind: 'rotated' as const, sessionId: row.session_id, userId: row.user_id, refreshToken };
    });
    if (outcome.kind === 'refused') throw unauthenticated('Session ended or refresh token unknown: sign in again');
    if (outcome.kind === 'reused') {
      this.log.warn({ sessionId: outcome.sessionId }, 'refresh token reused: session revoked');
      await this.broadcast(outcome.sessionId);
      throw unauthenticated('This refresh token was already used: the session is revoked, sign in again');
    }
    const access = this.tokens.issue(outcome.userId, outcome.sessionId);
    const user = await this.db.getRepository(UserEntity).findOneByOrFail({ id: outcome.userId });
    if (socket?.sessionId === outcome.sessionId) {
      socket.renew({ id: outcome.userId, sessionId: outcome.sessionId, expiresAt: access.expiresAt.getTime() });
    }
    return { ...access, refreshToken: outcome.refreshToken, user };
  }

  /**
   * Ends the viewer's session (with `allSessions`, every session of the account) on every
   * instance: its tokens fail, its sockets close with 4403.
   */
  async logOut(viewer: Viewer | null, allSessions = false): Promise<boolean> {
    if (!viewer) throw unauthenticated();
    const ended = allSessions
      ? ((await this.db.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = 'logged out everywhere' WHERE user_id = $1 AND revoked_at IS NULL RETURNING id`, [
          viewer.id,
        ])) as [Array<{ id: string }>, number])[0].map((r) => r.id)
      : [viewer.sessionId];
    if (!allSessions) await markRevoked(this.db.manager, viewer.sessionId, 'logged out');
    for (const sessionId of ended) await this.broadcast(sessionId);
    return true;
  }

  /**
   * Whether the viewer's session still stands (not revoked, user not deleted): one primary-key
   * lookup, made for every HTTP request and WebSocket connection, so a revocation or a deleted
   * account takes effect on the very next request on every instance.
   */
  async isLive(viewer: Viewer): Promise<boolean> {
    const rows = (await this.db.query(`SELECT 1 FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, [
      viewer.sessionId,
      viewer.id,
    ])) as unknown[];
    return rows.length > 0;
  }

  /** The viewer of an `Authorization` header whose session stands; null for none, a bad token or an ended session. */
  async viewerOf(header: unknown): Promise<Viewer | null> {
    const viewer = this.tokens.fromAuthorization(header);
    return viewer && (await this.isLive(viewer)) ? viewer : null;
  }

  /** Of `sessionIds`, the ones that no longer stand (one query; for sweeping open sockets). */
  async ended(sessionIds: string[]): Promise<string[]> {
    if (!sessionIds.length) return [];
    const rows = (await this.db.query(`SELECT id FROM sessions WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL`, [sessionIds])) as Array<{ id: string }>;
    const live = new Set(rows.map((r) => r.id));
    return sessionIds.filter((id) => !live.has(id));
  }

  private async insertRefreshToken(manager: EntityManager, sessionId: string): Promise<string> {
    const refreshToken = randomBytes(32).toString('base64url');
    await manager.query(
      `INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))`,
      [hashOf(refreshToken), sessionId, this.refreshTtlSeconds],
    );
    return refreshToken;
  }

  /** Tells this instance's listeners at once, and the others through pub/sub (their sweep covers a lost signal). */
  private async broadcast(sessionId: string): Promise<void> {
    this.announce(sessionId);
    await this.pubsub.publish(sessionRevokedTopic, { sessionId }).catch((err: Error) => {
      this.log.warn({ err: err.message, sessionId }, 'could not publish a session revocation; other instances close its sockets at their next sweep');
    });
  }

  private announce(sessionId: string): void {
    for (const listener of this.revokedListeners) listener(sessionId);
  }
}

async function markRevoked(manager: EntityManager, sessionId: string, reason: string): Promise<void> {
  await manager.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL`, [sessionId, reason]);
}

function parseRefreshToken(raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0) throw badUserInput('refreshToken must not be empty', 'refreshToken');
  if (raw.length > MAX_REFRESH_TOKEN_LENGTH || !/^[A-Za-z0-9_-]+$/.test(raw)) {
    throw badUserInput('refreshToken is not a refresh token', 'refreshToken');
  }
  return raw;
}
