import { hash, verify } from '@node-rs/argon2';
import type { DataSource } from 'typeorm';
import { UserEntity } from '../db/entities';
import { conflict, unauthenticated } from '../errors';
import { isUniqueViolation } from '../db/errors';
import { couldBeUsername, parseInput, logInInput, signUpInput } from '../validation';
import type { RateLimit } from '../rate-limit';
import type { SessionService, SessionTokens } from './sessions';
import type { Viewer } from './tokens';

/** argon2id with the library's recommended cost (m=19 MiB, t=2, p=1). */
const ARGON2 = { algorithm: 2 /* Argon2id */, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

export interface AuthResult extends SessionTokens {
  user: UserEntity;
}

/** Accounts: sign-up, log-in (each starts a session) and the current user. */
export class AuthService {
  /** Verified against for unknown usernames, so a miss costs as long as a wrong password. */
  private readonly decoyHash: Promise<string>;

  /**
   * @param logInAttempts attempts allowed per username, spent by each logIn and given back by a
   *   successful one, so guessing a password is slow while a person's typos are not.
   */
  constructor(
    private readonly db: DataSource,
    private readonly sessions: SessionService,
    private readonly logInAttempts: RateLimit,
  ) {
    this.decoyHash = hash('decoy-password-for-timing', ARGON2);
  }

  /** Creates an account. Throws BAD_USER_INPUT for invalid fields, CONFLICT for a taken username. */
  async signUp(raw: unknown): Promise<AuthResult> {
    const input = parseInput(signUpInput, raw);
    const passwordHash = await hash(input.password, ARGON2);
    try {
      return await this.db.transaction(async (m) => {
        const user = await m.getRepository(UserEntity).save({
          username: input.username,
          displayName: input.displayName ?? input.username,
          passwordHash,
          isAssistant: false,
        });
        return { ...(await this.sessions.create(user.id, m)), user: stripHash(user) };
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw conflict('That username is taken', 'username');
      throw err;
    }
  }

  /** Signs in. A wrong username or password gives the same UNAUTHENTICATED answer; too many, RATE_LIMITED. */
  async logIn(raw: unknown): Promise<AuthResult> {
    const input = parseInput(logInInput, raw);
    const key = input.username.toLowerCase();
    await this.logInAttempts.consume(key);
    const user = couldBeUsername(input.username)
      ? await this.db
          .getRepository(UserEntity)
          .createQueryBuilder('u')
          .addSelect('u.passwordHash')
          .where('lower(u.username) = lower(:username)', { username: input.username })
          .getOne()
      : null;
    const ok = await verify(user?.passwordHash ?? (await this.decoyHash), input.password).catch(() => false);
    if (!user || !user.passwordHash || !ok) throw unauthenticated('Wrong username or password');
    await this.logInAttempts.reset(key);
    return { ...(await this.sessions.create(user.id)), user: stripHash(user) };
  }

  /** The viewer's user, or null when signed out (or the account is gone). */
  async me(viewer: Viewer | null): Promise<UserEntity | null> {
    return viewer ? this.db.getRepository(UserEntity).findOneBy({ id: viewer.id }) : null;
  }
}

function stripHash(user: UserEntity): UserEntity {
  const { passwordHash: _omit, ...rest } = user;
  return rest as UserEntity;
}
