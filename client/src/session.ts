import { SessionEndedError, hasUnauthenticated } from './errors.js';
import type { GraphQLFormattedError } from 'graphql';

/** What `signUp`, `logIn` and `refreshSession` return, as the kit keeps it. */
export interface Session {
  /** The access token (`AuthPayload.token`). */
  token: string;
  /** The refresh token (`AuthPayload.refreshToken`), usable once. */
  refreshToken: string;
  /** When the access token expires (`AuthPayload.expiresAt`); read from the token when absent. */
  expiresAt?: string;
}

/** Where a session comes from: a value, or a function read once (e.g. from storage); null means signed out. */
export type SessionSource = Session | null | (() => Promise<Session | null> | Session | null);

/** Runs `refreshSession` over the open WebSocket; undefined when no socket is open (then HTTP is used). */
export type SocketRefresh = (refreshToken: string) => Promise<RefreshAnswer> | undefined;

/** The answer to a `refreshSession`: a new session, or the GraphQL errors. */
export interface RefreshAnswer {
  data?: { refreshSession?: { token: string; refreshToken: string; expiresAt: string } | null } | null;
  errors?: readonly GraphQLFormattedError[];
}

export const REFRESH_SESSION = `mutation RefreshSession($refreshToken: String!) {
  refreshSession(refreshToken: $refreshToken) { token expiresAt refreshToken }
}`;

/**
 * How long a refresh over HTTP waits for its answer by default (ms). A pooled keep-alive
 * connection that died silently (a network switch) never answers: given up, the refresh is tried
 * again on a new connection. The server rotates the refresh token only while the request's
 * connection is open, so one given up cannot spend it unseen.
 */
export const REFRESH_TIMEOUT_MS = 10_000;

/**
 * Runs `refresh` while holding the lock `name` for every tab or process that shares the stored
 * session (the Web Locks API's `navigator.locks.request` has this shape).
 */
export type SessionLock = <T>(name: string, refresh: () => Promise<T>) => Promise<T>;

/** The browser's Web Locks, where there are any (secure contexts; not Node.js 20). */
function webLocks(): SessionLock | undefined {
  const locks = (globalThis as { navigator?: { locks?: { request: SessionLock } } }).navigator?.locks;
  return locks ? (name, refresh) => locks.request(name, refresh) : undefined;
}

interface KeeperOptions {
  httpUrl: string;
  fetch: typeof fetch;
  /** How long a refresh over HTTP waits for its answer (ms); REFRESH_TIMEOUT_MS by default. */
  refreshTimeoutMs?: number;
  /** Serialises the refreshes of a shared stored session; the Web Locks API by default where present. */
  lock?: SessionLock;
  /** Told of each new session; a promise returned is awaited (the store written) before another tab may refresh. */
  onSessionChange?: (session: Session) => unknown;
  onSessionEnd?: (reason: string) => void;
}

/** The `exp` and `iat` (seconds) and `sid` claims of an access token, or nothing when it cannot be read. */
function claimsOf(token: string): { exp?: number; iat?: number; sid?: string } {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), '='))) as { exp?: number; iat?: number; sid?: string };
  } catch {
    return {};
  }
}

/** Whether `a`'s access token expires no earlier than `b`'s: issued no earlier (`exp` is in whole seconds: two within a second tie). */
const issuedNoEarlier = (a: Session, b: Session) => (claimsOf(a.token).exp ?? 0) >= (claimsOf(b.token).exp ?? 0);

/**
 * Keeps the session: hands out an access token that is valid for a while yet, refreshes it in-band
 * before it expires (over the open WebSocket, which renews that socket, else over HTTP), one
 * refresh at a time, and reports each new session through `onSessionChange`. A refused refresh
 * ends the session: every later use throws `SessionEndedError` and `onSessionEnd` is told once.
 */
export class SessionKeeper {
  private current: Session | null = null;
  /** When the current access token expires, on this machine's clock (ms). */
  private expiresAtLocal = 0;
  /** How long before expiry a refresh starts (ms). */
  private margin = 0;
  private loaded?: Promise<void>;
  private refreshing?: Promise<Session>;
  private timer?: ReturnType<typeof setTimeout>;
  private endedReason?: string;
  /** When the last refresh finished (ms). */
  private refreshedAt = 0;
  private disposed = false;
  /** Set by the link: how to refresh over its WebSocket while one is open. */
  socketRefresh?: SocketRefresh;
  /** Set by the link: whether its WebSocket is open (a refresh over it renews it). */
  socketOpen?: () => boolean;

  constructor(private readonly source: SessionSource, private readonly options: KeeperOptions) {}

  /** The reason the session ended, if it has. */
  get ended(): string | undefined {
    return this.endedReason;
  }

  /** Whether the application has given a session (and not signed out with `set(null)` since); false before loading. */
  get signedIn(): boolean {
    return this.current !== null;
  }

  /**
   * Whether `token`, refused by the server, may have been refused only for its age: a refresh
   * replaced it since, or it has expired by this machine's reckoning (not a session that ended).
   */
  outdated(token: string): boolean {
    return this.current !== null && (token !== this.current.token || Date.now() >= this.expiresAtLocal);
  }

  /** The session now (after loading), or null when signed out. */
  async session(): Promise<Session | null> {
    await this.load();
    return this.current;
  }

  /** Replaces the session (after a logIn, or null after signing out); a new session is live again. */
  set(session: Session | null): void {
    this.loaded = Promise.resolve();
    this.endedReason = undefined;
    this.adopt(session, Date.now());
  }

  /**
   * An access token that stays valid for the refresh margin at least: refreshes first when it
   * would not. Null when signed out. Throws `SessionEndedError` once the session has ended, and
   * whatever a failed refresh threw (e.g. the server is unreachable) for the caller to retry.
   */
  async token(): Promise<string | null> {
    await this.load();
    await this.takeNewSignIn();
    if (this.endedReason) throw new SessionEndedError(this.endedReason);
    if (!this.current) return null;
    if (Date.now() >= this.expiresAtLocal - this.margin) return (await this.refresh()).token;
    return this.current.token;
  }

  /**
   * A session the store holds that another sign-in made (in another tab, say: another session id,
   * issued no earlier than this one) is taken, as `set` would, whether or not this one is known to
   * have ended: the store is read at every operation. Newer tokens of this same session are the
   * refresh's to take (`refreshOnce`), which also renews the open socket.
   */
  private async takeNewSignIn(): Promise<void> {
    // Signed out (`setSession(null)`): only the application signs in again.
    if (typeof this.source !== 'function' || !this.current) return;
    const read = this.source;
    const stored = await Promise.resolve()
      .then(() => read())
      .catch(() => null);
    if (!stored || !this.current || stored.refreshToken === this.current.refreshToken) return;
    if (claimsOf(stored.token).sid === claimsOf(this.current.token).sid || !issuedNoEarlier(stored, this.current)) return;
    this.set(stored);
    this.onSignIn?.();
  }

  /** Set by the link: a session of another sign-in was taken from the store (its socket must reconnect as it). */
  onSignIn?: () => void;

  /** Refreshes now (one refresh at a time: concurrent callers share it). */
  refresh(): Promise<Session> {
    this.refreshing ??= this.runRefresh().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /**
   * After the server closed a socket with `Token expired`: refreshes unless a refresh finished in
   * the last few seconds (the subscriptions that close ended all ask; one refresh serves them).
   */
  renewExpired(): Promise<Session> {
    if (this.current && Date.now() - this.refreshedAt < 3000) return Promise.resolve(this.current);
    return this.refresh();
  }

  /** Ends the session (refused by the server): told once through `onSessionEnd`. */
  end(reason: string): void {
    if (this.endedReason) return;
    this.endedReason = reason;
    clearTimeout(this.timer);
    this.options.onSessionEnd?.(reason);
  }

  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }

  private load(): Promise<void> {
    this.loaded ??= (async () => {
      const session = typeof this.source === 'function' ? await this.source() : this.source;
      if (!this.current) this.adopt(session ?? null);
    })();
    return this.loaded;
  }

  /**
   * Makes `session` the current one. `requestedAt`: when the request that returned it was sent, on
   * this machine's clock (the server issued it after that); absent for a stored session, whose
   * `expiresAt` is then trusted.
   */
  private adopt(session: Session | null, requestedAt?: number): void {
    clearTimeout(this.timer);
    this.current = session;
    if (!session) return;
    const { exp, iat } = claimsOf(session.token);
    const serverExpiry = session.expiresAt ? Date.parse(session.expiresAt) : exp ? exp * 1000 : Date.now() + 60_000;
    // exp and iat are whole seconds: a token issued late in a second has up to 1 s less than exp − iat.
    const lifetime = exp && iat ? Math.max((exp - iat) * 500, (exp - iat - 1) * 1000) : Math.max(1000, serverExpiry - Date.now());
    // A token just issued lives `lifetime` from its request whatever this machine's clock says
    // (from the answer's arrival it would be counted too long by the round trip).
    this.expiresAtLocal = requestedAt !== undefined && exp && iat ? requestedAt + lifetime : serverExpiry;
    this.margin = Math.min(60_000, lifetime / 3) * (1 + Math.random() * 0.2); // jitter: tabs sharing a session rarely refresh together
    this.schedule(this.expiresAtLocal - this.margin - Date.now());
  }

  private schedule(inMs: number): void {
    clearTimeout(this.timer);
    if (this.disposed || this.endedReason) return;
    this.timer = setTimeout(() => {
      this.refresh().catch((err: unknown) => {
        if (err instanceof SessionEndedError) return;
        // Unreachable for now: try again soon; a reconnect or request refreshes too.
        this.schedule(Math.min(5000, Math.max(500, (this.expiresAtLocal - Date.now()) / 4)));
      });
    }, Math.max(0, inMs));
    (this.timer as { unref?: () => void }).unref?.();
  }

  private async runRefresh(): Promise<Session> {
    await this.load();
    if (typeof this.source !== 'function') return this.refreshOnce(undefined);
    // A stored session may be shared with other tabs or processes: their refreshes take turns
    // (the lock), each first reading the store, so none spends a refresh token another already
    // spent (which revokes the session). The lock is the page's origin's: one name for the API.
    const lock = this.options.lock ?? webLocks();
    const read = this.source;
    if (!lock) return this.refreshOnce(read);
    return lock(`chat-api session refresh ${this.options.httpUrl}`, () => this.refreshOnce(read, true));
  }

  /**
   * One refresh: of the current session, or of a newer one another tab or process stored
   * (`read`). `locked`: no one else refreshes meanwhile.
   */
  private async refreshOnce(read: (() => Promise<Session | null> | Session | null) | undefined, locked = false): Promise<Session> {
    if (this.endedReason) throw new SessionEndedError(this.endedReason);
    let current = this.current;
    if (!current) throw new SessionEndedError('Not signed in');
    const stored = read && (await Promise.resolve(read()).catch(() => null));
    // Another's: a different refresh token expiring no earlier (`exp` is in whole seconds, so two
    // refreshes within a second tie).
    if (stored && stored.refreshToken !== current.refreshToken && issuedNoEarlier(stored, current)) {
      // Refreshed elsewhere: adopted instead of spent again. Its token serves HTTP at once, but
      // an open WebSocket still carries the older one, which only a refresh over it renews (the
      // server would close it `Token expired`): that refresh is safe while the lock is held.
      this.adopt(stored);
      const renewSocket = locked && !!this.socketOpen?.();
      if (!renewSocket && Date.now() < this.expiresAtLocal - this.margin) return stored;
      current = stored;
    }
    const requestedAt = Date.now();
    const answer = await (this.socketRefresh?.(current.refreshToken) ?? this.refreshOverHttp(current.refreshToken));
    // Replaced meanwhile (`set()`: a new sign-in, or signed out): the answer is the old session's,
    // and neither its new tokens nor its refusal say anything of the session now.
    if (this.current !== current) {
      if (this.current) return this.current;
      throw new SessionEndedError('Not signed in');
    }
    const next = answer.data?.refreshSession;
    if (!next) {
      const refused = hasUnauthenticated(answer.errors) || answer.errors?.some((e) => e.extensions?.code === 'BAD_USER_INPUT');
      const message = answer.errors?.[0]?.message ?? 'refreshSession answered nothing';
      if (refused) {
        this.end(message);
        throw new SessionEndedError(message);
      }
      throw new Error(message);
    }
    const session: Session = { token: next.token, refreshToken: next.refreshToken, expiresAt: next.expiresAt };
    this.adopt(session, requestedAt);
    this.refreshedAt = Date.now();
    try {
      await this.options.onSessionChange?.(session); // stored before the lock passes to another tab
    } catch {
      // The application's store failed: the session stands (its old refresh token is spent).
    }
    return session;
  }

  private async refreshOverHttp(refreshToken: string): Promise<RefreshAnswer> {
    const response = await this.options.fetch(this.options.httpUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json, application/json' },
      body: JSON.stringify({ query: REFRESH_SESSION, operationName: 'RefreshSession', variables: { refreshToken } }),
      signal: AbortSignal.timeout(this.options.refreshTimeoutMs ?? REFRESH_TIMEOUT_MS),
    });
    const body = (await response.json().catch(() => undefined)) as RefreshAnswer | undefined;
    if (!body || (!body.data && !body.errors)) throw new Error(`refreshSession over HTTP answered ${response.status}`);
    return body;
  }
}
