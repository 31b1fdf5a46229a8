/**
 * Where typing and presence live while they last: Redis when `REDIS_URL` is set (shared by every
 * instance), memory otherwise. Never the database (docs/guarantees.md, guarantee 11).
 *
 * Both are deadlines, read against one clock (Redis's own `TIME`, so instances' clocks may drift):
 * - typing: one deadline per room and user, pushed out by each `setTyping(true)`;
 * - presence: per user, one deadline per instance holding a socket of theirs, pushed out by that
 *   instance's heartbeat; plus the set of users announced online (what `online()` answers).
 *
 * Every method that reports a flip reports it to exactly one caller (the operations are atomic), so
 * each flip is published once, by the instance that saw it.
 */
export interface EphemeralStore {
  /** Sets the typing deadline `ttlMs` from now; true when the user was not typing (a flip to typing). */
  startTyping(roomId: string, userId: string, ttlMs: number): Promise<boolean>;
  /** Ends typing at once; true when the user was typing (a flip to not typing). */
  stopTyping(roomId: string, userId: string): Promise<boolean>;
  /**
   * Ends typing when its deadline has passed: `'expired'` (a flip, reported to this caller only),
   * `'gone'` (ended already), or the ms left (it was refreshed, maybe by another instance).
   */
  expireTyping(roomId: string, userId: string): Promise<'expired' | 'gone' | number>;
  /** Ends every typing whose deadline has passed (left by an instance that died); each is reported once. */
  sweepTyping(limit: number): Promise<Array<{ roomId: string; userId: string }>>;

  /**
   * Records that `instanceId` holds sockets of these users for `ttlMs` more (a first socket, or a
   * heartbeat); resolves to the users that were not online anywhere (flips to online).
   */
  holdPresence(instanceId: string, userIds: string[], ttlMs: number): Promise<string[]>;
  /** `instanceId` no longer holds sockets of the user; true when no instance does now (a flip to offline). */
  releasePresence(instanceId: string, userId: string): Promise<boolean>;
  /** Takes offline every announced user whose every holder's deadline has passed (instances that died); each once. */
  sweepPresence(limit: number): Promise<string[]>;
  /** Which of `userIds` are online, in one round trip. */
  online(userIds: string[]): Promise<Set<string>>;

  /** Releases the connection. */
  close(): Promise<void>;
}
