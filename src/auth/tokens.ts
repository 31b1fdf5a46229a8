import { createHmac, createSecretKey, randomUUID, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { LRUCache } from 'lru-cache';

/** The signed-in user a request acts for, in one session. */
export interface Viewer {
  id: string;
  /** The session the access token belongs to (revoked by `logOut` or a reused refresh token). */
  sessionId: string;
  /** When the access token expires (ms since the epoch). */
  expiresAt?: number;
}

/** Why a token was refused: `expired` is worth a refresh, `invalid` is not. */
export type TokenRefusal = 'expired' | 'invalid';

const ALGORITHM = 'HS256' as const;
const ISSUER = 'chat-api';
/** How many verified tokens are remembered (the least recently used go first). */
const VERIFIED_TOKENS = 10_000;

/**
 * Signs and verifies access tokens: HS256 only (pinned on both sides), with an issuer, an expiry
 * and the session id (`sid`). A token without a session is refused: it could not be revoked.
 */
export class TokenService {
  /** A key object, made once: given a string, jsonwebtoken first tries it as a PEM key on every call. */
  private readonly secret: KeyObject;
  /**
   * Tokens whose signature and claims were verified, with their viewer: the same token again (a
   * client's every request) skips the HMAC and the JSON parsing, a tenth of a send's CPU, but never
   * its expiry, checked on every use. The session behind it is still checked on every request
   * (`SessionService`): revoking it takes effect at once, cached or not.
   */
  private readonly verified = new LRUCache<string, Viewer>({ max: VERIFIED_TOKENS });

  /** The key of refresh secrets' tags (`refreshTag`), derived from the signing key and used for nothing else. */
  private readonly refreshKey: KeyObject;

  constructor(secret: string, readonly ttlSeconds: number) {
    this.secret = createSecretKey(Buffer.from(secret, 'utf8'));
    this.refreshKey = createSecretKey(createHmac('sha256', this.secret).update('chat-api refresh secret tag').digest());
  }

  /** A MAC of `data` that only this server's key makes: a refresh secret's proof that it was issued here (`SessionService`). */
  refreshTag(data: Buffer): Buffer {
    return createHmac('sha256', this.refreshKey).update(data).digest();
  }

  /** An access token for the user in `sessionId`, and the moment it expires. */
  issue(userId: string, sessionId: string): { token: string; expiresAt: Date } {
    const token = jwt.sign({ sid: sessionId }, this.secret, {
      algorithm: ALGORITHM,
      issuer: ISSUER,
      subject: userId,
      expiresIn: this.ttlSeconds,
      jwtid: randomUUID(), // two tokens of one session issued in the same second still differ
    });
    const { exp } = jwt.decode(token) as { exp: number };
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** The viewer of a valid token; null for anything else (expired, forged, another algorithm, no session). */
  verify(token: string): Viewer | null {
    const result = this.check(token);
    return 'viewer' in result ? result.viewer : null;
  }

  /** The viewer of a valid token, or why it was refused. */
  check(token: string): { viewer: Viewer } | { refused: TokenRefusal } {
    const known = this.verified.get(token);
    if (known) {
      // jsonwebtoken's own rule: expired from the second `exp` on.
      if (known.expiresAt !== undefined && Date.now() >= known.expiresAt) {
        this.verified.delete(token);
        return { refused: 'expired' };
      }
      return { viewer: known };
    }
    try {
      const claims = jwt.verify(token, this.secret, { algorithms: [ALGORITHM], issuer: ISSUER });
      if (typeof claims !== 'object' || typeof claims.sub !== 'string' || typeof claims.sid !== 'string') return { refused: 'invalid' };
      const viewer = Object.freeze({ id: claims.sub, sessionId: claims.sid, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined });
      this.verified.set(token, viewer);
      return { viewer };
    } catch (err) {
      return { refused: err instanceof jwt.TokenExpiredError ? 'expired' : 'invalid' };
    }
  }

  /**
   * Reads `Bearer <token>`. `undefined` when there is no header at all, `null` when there is one
   * that does not hold a valid token.
   */
  fromAuthorization(header: unknown): Viewer | null | undefined {
    const result = this.checkAuthorization(header);
    return result === undefined ? undefined : 'viewer' in result ? result.viewer : null;
  }

  /** Like `fromAuthorization`, saying why a header was refused. */
  checkAuthorization(header: unknown): { viewer: Viewer } | { refused: TokenRefusal } | undefined {
    if (header === undefined || header === null || header === '') return undefined;
    if (typeof header !== 'string') return { refused: 'invalid' };
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? this.check(match[1]) : { refused: 'invalid' };
  }
}
