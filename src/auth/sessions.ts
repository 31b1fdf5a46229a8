import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import DataLoader from 'dataloader';
import { LRUCache } from 'lru-cache';
import type { DataSource, EntityManager } from 'typeorm';
import { UserEntity } from '../db/entities';
import { isLockNotAvailable } from '../db/errors';
import { prepare, runPrepared } from '../db/prepared';
import { AppError, badUserInput, ErrorCode, unauthenticated } from '../errors';
import { REPEATED_WARNING_MS, warnAtMostEvery, type Logger } from '../logger';
import { sessionRevokedTopic, unsubscribeWhenSettled, type PubSub } from '../pubsub';
import { isUuid } from '../validation';
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

/** How often each instance deletes the rows of sessions that can no longer be used (`SessionService.purge`). */
const PURGE_EVERY_MS = 60 * 60 * 1000;
/** The first purge comes within this of an instance's start. */
export const PURGE_FIRST_MS = 60 * 1000;
const PURGE_BATCH = 1000;

/** Longest a refresh waits for its session's row (another refresh of it, stalled), in ms. */
const REFRESH_LOCK_WAIT_MS = 1000;
const refreshUnanswerable = () =>
  new AppError(ErrorCode.ServiceUnavailable, 'The refresh could not be completed now; nothing changed: retry with the same refresh token');

/** A refresh token: `<session id>.<43 base64url characters: 32 bytes, a generation, a nonce and a tag (`SessionService`)>`. */
const REFRESH_TOKEN = /^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.([A-Za-z0-9_-]{43})$/i;

/**
 * `isLive` for the requests of one turn of the event loop, prepared: it runs for every request. A
 * lone request's has a statement of its own: PostgreSQL plans `= ANY($1)` again on every run (it
 * never settles on a generic plan for an array parameter), and `= $1` once per connection.
 */
const SESSIONS_LIVE = prepare('sessions_live', 'SELECT id, user_id FROM sessions WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL');
const SESSION_LIVE = prepare('session_live', 'SELECT id, user_id FROM sessions WHERE id = $1::uuid AND revoked_at IS NULL');

/** What `SESSION_LIVE` and `SESSIONS_LIVE` read of a session that stands. */
type SessionRow = { id: string; user_id: string };

/** Most session checks one statement answers. */
const MAX_SESSION_BATCH = 256;
/** How many sessions `standing` remembers, and for how long after the check that found each standing. */
const STANDING_SESSIONS = 10_000;
const STANDING_TTL_MS = 60_000;
/** Revocations kept to publish again once pub/sub is back (the oldest dropped beyond: other instances' sweeps cover them). */
export const MAX_UNPUBLISHED = 10_000;
/** How often revocations pub/sub did not take are tried again (also at once when pub/sub reconnects). */
const REPUBLISH_RETRY_MS = 1000;

const hashOf = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

/** Bytes of a refresh secret's parts: its generation, a random nonce, its tag (32 in all: 43 base64url characters). */
const GENERATION_BYTES = 4;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Sessions: short access tokens carrying a session id, and rotating refresh tokens
 * (`<session id>.<secret>`) of which the session row keeps only the current secret's sha-256.
 * A secret names the generation of the session it was issued for (0 at sign-in, one more at each
 * refresh) and carries a tag only this server makes (`secretFor`). `refresh` rotates; presenting a
 * secret the session already rotated away — tagged for one of its earlier generations — revokes the
 * whole session (theft detection), and any other secret is unknown and ends nothing: the session
 * id is in every access token, so anyone who has seen one could otherwise end the session with a
 * made-up secret. A revoked or deleted session fails every check at
 * once (`isLive` reads the database), and `onRevoked` listeners on every instance hear of it
 * through pub/sub to close its sockets.
 */
export class SessionService {
  private readonly revokedListeners = new Set<(sessionId: string) => void>();
  /** What makes revocations whose signals were missed take effect on this instance's sockets (`settleRevocations`). */
  private readonly settlers = new Set<() => Promise<void>>();
  private unsubscribe?: Promise<(() => Promise<void>) | undefined>;
  private offReconnect?: () => void;
  private purgeTimer?: NodeJS.Timeout;
  /**
   * The checks asked for in one turn of the event loop (the requests read from the network in it)
   * go to the database as one statement when the turn ends: one round trip instead of one per
   * request. Nothing is cached; each check reads the database after its request arrived.
   */
  private readonly liveness = new DataLoader<Viewer, boolean>((viewers) => this.liveOf(viewers), {
    cache: false,
    maxBatchSize: MAX_SESSION_BATCH,
    batchScheduleFn: (run) => setImmediate(run),
  });
  /**
   * Sessions a check on this instance found standing in the last minute, and not heard of as
   * revoked since. Never a reason to skip a check: it only lets an HTTP request of such a session
   * spend its user's budgets while its check runs (`viewerOf`). A session that is not in it — new
   * here, found ended, revoked, or while revocation signals may have been lost — waits for its
   * check first, so a token that was logged out cannot spend its owner's budgets, even for a moment.
   */
  private readonly standing = new LRUCache<string, true>({ max: STANDING_SESSIONS, ttl: STANDING_TTL_MS });
  /**
   * Sessions revoked here whose signal could not be published (this instance cut off from Redis,
   * others maybe not): published again once this instance's pub/sub is back, so other instances
   * close their sockets then rather than at their next sweep, whichever comes first.
   */
  private readonly unpublished = new Set<string>();
  private republishTimer?: NodeJS.Timeout;
  /** A `publishAgain` runs: the others asked for meanwhile leave the kept ones to it. */
  private republishing = false;
  private closed = false;
  private readonly unpublishedWarning: (fields: Record<string, unknown>) => void;

  constructor(
    private readonly db: DataSource,
    private readonly tokens: TokenService,
    private readonly pubsub: PubSub,
    private readonly log: Logger,
    private readonly refreshTtlSeconds: number,
  ) {
    this.unpublishedWarning = warnAtMostEvery(
      log,
      REPEATED_WARNING_MS,
      'could not publish a session revocation; tried again every second, other instances close its sockets when it goes or at their next sweep',
    );
  }

  /**
   * Listens for revocations made on other instances, without waiting for it: a Redis that is down
   * at start holds the subscription until it is back, and the instance must serve meanwhile (the
   * sweep of open sockets covers what a missing signal would have closed).
   */
  start(): void {
    // The first within PURGE_FIRST_MS of the start (instances restarted more often than hourly
    // would purge never), at a moment of its own for each instance; then every PURGE_EVERY_MS.
    this.purgeSoon(Math.random() * PURGE_FIRST_MS);
    // Revocations announced while the connection was down went unheard; those made here went unsaid.
    this.offReconnect = this.pubsub.onReconnect(() => {
      this.standing.clear();
      void this.publishAgain();
    });
    this.unsubscribe = this.pubsub
      .subscribe(sessionRevokedTopic, ({ sessionId }) => this.announce(sessionId))
      .catch((err) => {
        this.log.warn({ err: (err as Error).message }, 'session revocation subscription failed; open sockets are swept by timer');
        return undefined;
      });
  }

  private purgeSoon(delayMs: number): void {
    this.purgeTimer = setTimeout(() => {
      void this.purge()
        .catch((err) => this.log.warn({ err: (err as Error).message }, 'ended sessions could not be purged; retrying later'))
        .finally(() => {
          if (!this.closed) this.purgeSoon(PURGE_EVERY_MS);
        });
    }, delayMs);
    this.purgeTimer.unref();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.purgeTimer);
    clearTimeout(this.republishTimer);
    this.revokedListeners.clear();
    this.offReconnect?.();
    unsubscribeWhenSettled(this.unsubscribe);
  }

  /**
   * Deletes the rows of sessions that can no longer be used, so the table holds about one row per
   * signed-in device: revoked ones a day after their revocation, and ones whose refresh token
   * expired, once every access token issued with it has expired too (`JWT_TTL_SECONDS` later).
   * A token of a deleted session is refused as one of a revoked session is. Every instance runs it
   * within a minute of its start and every PURGE_EVERY_MS after (deleting is idempotent), in batches. Resolves to how many were deleted.
   */
  async purge(): Promise<number> {
    let deleted = 0;
    for (;;) {
      const [, count] = (await this.db.query(
        `DELETE FROM sessions WHERE id IN (SELECT id FROM sessions
           WHERE revoked_at < now() - interval '1 day' OR refresh_expires_at < now() - make_interval(secs => $1)
           LIMIT $2)`,
        [this.tokens.ttlSeconds, PURGE_BATCH],
      )) as [unknown, number];
      deleted += count;
      if (count < PURGE_BATCH) return deleted;
    }
  }

  /** Calls `listener` with the id of each session revoked here or on another instance. */
  onRevoked(listener: (sessionId: string) => void): () => void {
    this.revokedListeners.add(listener);
    return () => this.revokedListeners.delete(listener);
  }

  /** Calls `listener` when revocation signals may have been lost (the pub/sub connection came back). */
  onSignalsLost(listener: () => void): () => void {
    return this.pubsub.onReconnect(listener);
  }

  /** Whether revocation signals reach this instance now (pub/sub is connected). */
  get signalsArrive(): boolean {
    return this.pubsub.connected;
  }

  /** Registers what `settleRevocations` runs (`SocketSessions`: a check of its sockets' sessions). */
  onSettleRevocations(settle: () => Promise<void>): () => void {
    this.settlers.add(settle);
    return () => this.settlers.delete(settle);
  }

  /**
   * For what reaches sockets from the database without a signal (a heal of the rooms' hubs or of
   * the viewers' feeds), called after reading what it will deliver and before delivering it: while
   * revocation signals may have been missed (pub/sub down, or back without a check since), resolves
   * once every socket here whose session had ended by then is closed, so that nothing sent after a
   * revocation reaches its sockets (docs/guarantees.md, "Revocation at once, everywhere"); at once
   * otherwise. Rejects when the sessions cannot be read (the heal keeps its position and retries).
   */
  async settleRevocations(): Promise<void> {
    await Promise.all([...this.settlers].map((settle) => settle()));
  }

  /** Starts a session for the user (sign-up, log-in), inside the caller's transaction when given. */
  async create(userId: string, manager: EntityManager = this.db.manager): Promise<SessionTokens> {
    const id = randomUUID();
    const secret = this.secretFor(id, 0);
    await manager.query(
      `INSERT INTO sessions (id, user_id, refresh_hash, refresh_expires_at, generation) VALUES ($1, $2, $3, now() + make_interval(secs => $4), 0)`,
      [id, userId, hashOf(secret), this.refreshTtlSeconds],
    );
    return { ...this.tokens.issue(userId, id), refreshToken: `${id}.${secret}` };
  }

  /** A new refresh secret for generation `generation` of session `sessionId`: the generation, a random nonce, and their tag. */
  private secretFor(sessionId: string, generation: number): string {
    const head = Buffer.alloc(GENERATION_BYTES + NONCE_BYTES);
    head.writeUInt32BE(generation);
    randomBytes(NONCE_BYTES).copy(head, GENERATION_BYTES);
    return Buffer.concat([head, this.tagOf(sessionId, head)]).toString('base64url');
  }

  /** The generation of session `sessionId` that `secret` was issued for, or undefined for a secret this server did not issue for it. */
  private generationOf(sessionId: string, secret: string): number | undefined {
    const bytes = Buffer.from(secret, 'base64url');
    if (bytes.length !== GENERATION_BYTES + NONCE_BYTES + TAG_BYTES) return undefined;
    const head = bytes.subarray(0, GENERATION_BYTES + NONCE_BYTES);
    return timingSafeEqual(bytes.subarray(head.length), this.tagOf(sessionId, head)) ? head.readUInt32BE(0) : undefined;
  }

  private tagOf(sessionId: string, head: Buffer): Buffer {
    return this.tokens.refreshTag(Buffer.concat([Buffer.from(sessionId, 'utf8'), head])).subarray(0, TAG_BYTES);
  }

  /**
   * Rotates a refresh token: a new access token and a new refresh token; the one given stops
   * working. A token already used revokes its session (and is UNAUTHENTICATED, as are unknown,
   * expired and revoked ones); two refreshes racing with one token are serialised by the row
   * lock, so the second counts as reuse. Sent over a WebSocket of the same session, renews that socket.
   *
   * A rotation the client never hears of would leave it holding the retired token, and its next
   * refresh would end the session as reuse. So the rotation, and a revocation for reuse, commit
   * only while `answerable` (its transport) says the answer will still reach the client (a
   * closing socket waits for it), and the refresh waits at most `REFRESH_LOCK_WAIT_MS` for its
   * session's row: held longer (a stalled racing refresh), it changes nothing and is answered
   * SERVICE_UNAVAILABLE, to be retried as it was.
   */
  async refresh(raw: unknown, socket?: SocketAuth, answerable?: () => boolean): Promise<SessionTokens & { user: UserEntity }> {
    const { sessionId, secret } = parseRefreshToken(raw);
    const outcome = await this.db.transaction(async (m) => {
      await m.query(`SET LOCAL lock_timeout = ${REFRESH_LOCK_WAIT_MS}`);
      const [row] = (await m.query(
        `SELECT user_id, refresh_hash, refresh_expires_at < now() AS expired, revoked_at, generation FROM sessions WHERE id = $1 FOR UPDATE`,
        [sessionId],
      )) as Array<{ user_id: string; refresh_hash: Buffer; expired: boolean; revoked_at: Date | null; generation: number }>;
      if (!row || row.revoked_at || row.expired) return { kind: 'refused' as const };
      if (!timingSafeEqual(Buffer.from(row.refresh_hash), hashOf(secret))) {
        // Not the session's current secret. Made up (or issued before secrets were tagged): unknown, nothing ends.
        const issued = this.generationOf(sessionId, secret);
        if (issued === undefined || issued >= row.generation) return { kind: 'refused' as const };
        // One the session already rotated away (copied), so end the session. Unless no one can
        // hear the answer: a refresh its client gave up (an instance that stalled) and sent again
        // elsewhere, where it rotated the secret this one carries; whoever sent it learns nothing
        // from it, so it ends nothing.
        if (answerable && !answerable()) throw refreshUnanswerable();
        await markRevoked(m, sessionId, 'refresh token reused');
        return { kind: 'reused' as const, sessionId };
      }
      const next = this.secretFor(sessionId, row.generation + 1);
      await m.query(
        `UPDATE sessions SET refresh_hash = $2, refresh_expires_at = now() + make_interval(secs => $3), generation = generation + 1, refreshed_at = now() WHERE id = $1`,
        [sessionId, hashOf(next), this.refreshTtlSeconds],
      );
      const user = await m.getRepository(UserEntity).findOneByOrFail({ id: row.user_id });
      if (answerable && !answerable()) throw refreshUnanswerable(); // rolls the rotation back
      return { kind: 'rotated' as const, sessionId, user, refreshToken: `${sessionId}.${next}` };
    }).catch((err: unknown) => {
      throw isLockNotAvailable(err) ? refreshUnanswerable() : err;
    });
    if (outcome.kind === 'refused') throw unauthenticated('Session ended or refresh token unknown: sign in again');
    if (outcome.kind === 'reused') {
      this.log.warn({ sessionId: outcome.sessionId }, 'refresh token reused: session revoked');
      await this.broadcast(outcome.sessionId);
      throw unauthenticated('This refresh token was already used: the session is revoked, sign in again');
    }
    const { user } = outcome;
    const access = this.tokens.issue(user.id, outcome.sessionId);
    if (socket?.sessionId === outcome.sessionId) {
      socket.renew({ id: user.id, sessionId: outcome.sessionId, expiresAt: access.expiresAt.getTime() });
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
   * Whether the viewer's session still stands (not revoked, user not deleted): a primary-key
   * lookup, made for every HTTP request and WebSocket connection (those of one turn of the event
   * loop together), so a revocation or a deleted account takes effect on the very next request on
   * every instance.
   */
  isLive(viewer: Viewer): Promise<boolean> {
    // A session id that is no uuid stands for nothing, whatever the database's state, and never
    // joins a statement (where it would fail the others' checks).
    return isUuid(viewer.sessionId) ? this.liveness.load(viewer) : Promise.resolve(false);
  }

  /** Which of `viewers`' sessions stand, in one statement. */
  private async liveOf(viewers: readonly Viewer[]): Promise<boolean[]> {
    const rows =
      viewers.length === 1
        ? await runPrepared<SessionRow[]>(this.db, SESSION_LIVE, [viewers[0].sessionId])
        : await runPrepared<SessionRow[]>(this.db, SESSIONS_LIVE, [viewers.map((v) => v.sessionId)]);
    const userOf = new Map(rows.map((r) => [r.id, r.user_id]));
    return viewers.map((v) => {
      const live = userOf.get(v.sessionId) === v.id;
      this.recordOf(v, live);
      return live;
    });
  }

  /**
   * The viewer of an `Authorization` header: `claimed` at once, as its token says (null for none or
   * a bad token), and the `check` of its session, made when first asked for. `standing`: the
   * session was found standing here lately (see `standing`), so its budgets may be spent while the
   * check runs, and a send's own statement may check it instead (`SessionCheck.settle`).
   */
  viewerOf(header: unknown): { claimed: Viewer | null; check?: SessionCheck; standing: boolean } {
    const claimed = this.tokens.fromAuthorization(header) ?? null;
    if (!claimed) return { claimed, standing: false };
    const check = this.checkFor(claimed);
    return { claimed, check, standing: check.standing };
  }

  /**
   * The check of `viewer`'s session for one request or operation, made after it arrived: an HTTP
   * request's (`viewerOf`), or an operation's on a WebSocket whose session was found standing when
   * it connected, so that a revocation whose signal this instance missed still takes effect at the
   * socket's next operation.
   */
  checkFor(viewer: Viewer): SessionCheck {
    return new SessionCheck(viewer, this.checkOf, this.recordOf, this.standing.has(viewer.sessionId));
  }

  private readonly checkOf = (viewer: Viewer) => this.isLive(viewer);
  /**
   * Keeps what a check (`liveOf`), or a statement that checked the session itself, found of it. A
   * session found ended is announced here, as a revocation signal would be: this instance's sockets
   * of it close, also when the signal never came (its instance cut off from pub/sub).
   */
  private readonly recordOf = (viewer: Viewer, live: boolean) => {
    if (live) this.standing.set(viewer.sessionId, true);
    else this.announce(viewer.sessionId);
  };

  /** Of `sessionIds`, the ones that no longer stand (one query; for sweeping open sockets). */
  async ended(sessionIds: string[]): Promise<string[]> {
    if (!sessionIds.length) return [];
    const rows = (await this.db.query(`SELECT id FROM sessions WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL`, [sessionIds])) as Array<{ id: string }>;
    const live = new Set(rows.map((r) => r.id));
    return sessionIds.filter((id) => !live.has(id));
  }

  /** Tells this instance's listeners at once, and the others through pub/sub (their sweep covers a lost signal). */
  private async broadcast(sessionId: string): Promise<void> {
    this.announce(sessionId);
    try {
      await this.pubsub.publish(sessionRevokedTopic, { sessionId });
      if (this.unpublished.size) void this.publishAgain(); // pub/sub took this one: the ones it did not take go too
    } catch (err) {
      this.unpublished.add(sessionId);
      if (this.unpublished.size > MAX_UNPUBLISHED) this.unpublished.delete(this.unpublished.values().next().value!);
      this.unpublishedWarning({ err: (err as Error).message, sessionId, kept: this.unpublished.size });
      this.republishSoon();
    }
  }

  /**
   * Publishes the revocations pub/sub did not take, oldest first; at the first that fails, tries
   * again a second later. Kept in memory only: a restart loses them (the sweep still covers them).
   */
  private async publishAgain(): Promise<void> {
    if (this.republishing) return;
    this.republishing = true;
    clearTimeout(this.republishTimer);
    this.republishTimer = undefined;
    let published = 0;
    try {
      for (const sessionId of [...this.unpublished]) {
        try {
          await this.pubsub.publish(sessionRevokedTopic, { sessionId });
        } catch {
          this.republishSoon();
          break;
        }
        this.unpublished.delete(sessionId);
        published++;
      }
    } finally {
      this.republishing = false;
    }
    if (published) this.log.info({ published, left: this.unpublished.size }, 'published session revocations pub/sub had not taken');
  }

  private republishSoon(): void {
    if (!this.closed) this.republishTimer ??= setTimeout(() => void this.publishAgain(), REPUBLISH_RETRY_MS).unref();
  }

  private announce(sessionId: string): void {
    this.standing.delete(sessionId);
    for (const listener of this.revokedListeners) listener(sessionId);
  }
}

async function markRevoked(manager: EntityManager, sessionId: string, reason: string): Promise<void> {
  await manager.query(`UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL`, [sessionId, reason]);
}

function parseRefreshToken(raw: unknown): { sessionId: string; secret: string } {
  if (typeof raw !== 'string' || raw.length === 0) throw badUserInput('refreshToken must not be empty', 'refreshToken');
  const match = REFRESH_TOKEN.exec(raw);
  if (!match) throw badUserInput('refreshToken is not a refresh token', 'refreshToken');
  return { sessionId: match[1].toLowerCase(), secret: match[2] };
}

/** A session for a statement to check together with its own work, and to settle from what it found (`checkedInStatement`). */
export interface SessionToCheck {
  /** The viewer the request's token claims: the statement checks their `sessionId`. */
  readonly viewer: Viewer;
  settle(live: boolean): void;
}

/**
 * An HTTP request's session check (`SessionService.viewerOf`). Made when first asked for
 * (`result`), or answered instead by a statement that checked the session together with its own
 * work (`settle`: a send's, `MessageStore.insert`), so that such a request costs one round trip to
 * the database rather than two. Either way it reads the database after the request arrived.
 */
export class SessionCheck {
  private answer?: Promise<Viewer | null>;

  constructor(
    readonly claimed: Viewer,
    private readonly check: (viewer: Viewer) => Promise<boolean>,
    private readonly record: (viewer: Viewer, live: boolean) => void,
    /** The session was found standing here lately (`SessionService.standing`): its budgets may be spent while it is checked. */
    readonly standing: boolean,
  ) {}

  /** Whether the check was made, or answered by a statement. */
  get started(): boolean {
    return this.answer !== undefined;
  }

  /** The claimed viewer once the session is found standing, null if it ended (rejects when the database cannot answer); makes the check if nothing did. */
  result(): Promise<Viewer | null> {
    return (this.answer ??= this.check(this.claimed).then((live) => (live ? this.claimed : null)));
  }

  /** Answers the check with what a statement found of the session. */
  settle(live: boolean): void {
    this.record(this.claimed, live);
    this.answer = Promise.resolve(live ? this.claimed : null);
  }
}
