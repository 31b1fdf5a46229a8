import { createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';

/** The signed-in user a request acts for. */
export interface Viewer {
  id: string;
  /** When the token expires (ms since the epoch). */
  expiresAt?: number;
}

const ALGORITHM = 'HS256' as const;
const ISSUER = 'chat-api';

/** Signs and verifies session tokens: HS256 only (pinned on both sides), with an issuer and an expiry. */
export class TokenService {
  /** A key object, made once: given a string, jsonwebtoken first tries it as a PEM key on every call. */
  private readonly secret: KeyObject;

  constructor(secret: string, private readonly ttlSeconds: number) {
    this.secret = createSecretKey(Buffer.from(secret, 'utf8'));
  }

  /** A token for the user and the moment it expires. */
  issue(userId: string): { token: string; expiresAt: Date } {
    const token = jwt.sign({}, this.secret, {
      algorithm: ALGORITHM,
      issuer: ISSUER,
      subject: userId,
      expiresIn: this.ttlSeconds,
    });
    const { exp } = jwt.decode(token) as { exp: number };
    return { token, expiresAt: new Date(exp * 1000) };
  }

  /** The viewer of a valid token; null for anything else (expired, forged, another algorithm). */
  verify(token: string): Viewer | null {
    try {
      const claims = jwt.verify(token, this.secret, { algorithms: [ALGORITHM], issuer: ISSUER });
      if (typeof claims !== 'object' || typeof claims.sub !== 'string') return null;
      return { id: claims.sub, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : undefined };
    } catch {
      return null;
    }
  }

  /**
   * Reads `Bearer <token>`. `undefined` when there is no header at all, `null` when there is one
   * that does not hold a valid token.
   */
  fromAuthorization(header: unknown): Viewer | null | undefined {
    if (header === undefined || header === null || header === '') return undefined;
    if (typeof header !== 'string') return null;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return match ? this.verify(match[1]) : null;
  }
}
