import type { EphemeralStore } from './store';

/**
 * The in-process `EphemeralStore` (the embedded mode, one instance): the same deadlines and the
 * same answers as the Redis store, on the process clock (injectable for unit tests).
 */
export class MemoryEphemeralStore implements EphemeralStore {
  /** `roomId:userId` → typing deadline. */
  private readonly typing = new Map<string, number>();
  /** userId → (instanceId → presence deadline). */
  private readonly holders = new Map<string, Map<string, number>>();
  /** Users announced online → their latest holder deadline. */
  private readonly announced = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now) {}

  async startTyping(roomId: string, userId: string, ttlMs: number): Promise<boolean> {
    const key = `${roomId}:${userId}`;
    const fresh = !this.typing.has(key);
    this.typing.set(key, this.now() + ttlMs);
    return fresh;
  }

  async stopTyping(roomId: string, userId: string): Promise<boolean> {
    return this.typing.delete(`${roomId}:${userId}`);
  }

  async expireTyping(roomId: string, userId: string): Promise<'expired' | 'gone' | number> {
    const key = `${roomId}:${userId}`;
    const deadline = this.typing.get(key);
    if (deadline === undefined) return 'gone';
    const left = deadline - this.now();
    if (left > 0) return left;
    this.typing.delete(key);
    return 'expired';
  }

  async sweepTyping(limit: number): Promise<Array<{ roomId: string; userId: string }>> {
    const now = this.now();
    const due = [...this.typing].filter(([, deadline]) => deadline <= now).slice(0, limit);
    return due.map(([key]) => {
      this.typing.delete(key);
      const [roomId, userId] = key.split(':');
      return { roomId, userId };
    });
  }

  async holdPresence(instanceId: string, userIds: string[], ttlMs: number): Promise<string[]> {
    const deadline = this.now() + ttlMs;
    const flipped: string[] = [];
    for (const userId of userIds) {
      let holders = this.holders.get(userId);
      if (!holders) this.holders.set(userId, (holders = new Map()));
      holders.set(instanceId, deadline);
      const latest = this.announced.get(userId);
      if (latest === undefined) flipped.push(userId);
      if (latest === undefined || latest < deadline) this.announced.set(userId, deadline);
    }
    return flipped;
  }

  async releasePresence(instanceId: string, userId: string): Promise<boolean> {
    const holders = this.holders.get(userId);
    holders?.delete(instanceId);
    if (holders && this.live(holders).size > 0) return false;
    this.holders.delete(userId);
    return this.announced.delete(userId);
  }

  async sweepPresence(limit: number): Promise<string[]> {
    const now = this.now();
    const gone: string[] = [];
    for (const [userId, latest] of [...this.announced]) {
      if (gone.length >= limit) break;
      if (latest > now) continue;
      const live = this.live(this.holders.get(userId) ?? new Map());
      if (live.size > 0) {
        this.announced.set(userId, Math.max(...live.values()));
        continue;
      }
      this.holders.delete(userId);
      this.announced.delete(userId);
      gone.push(userId);
    }
    return gone;
  }

  async online(userIds: string[]): Promise<Set<string>> {
    return new Set(userIds.filter((id) => this.announced.has(id)));
  }

  async close(): Promise<void> {
    this.typing.clear();
    this.holders.clear();
    this.announced.clear();
  }

  /** Drops the holders whose deadline has passed; returns what is left. */
  private live(holders: Map<string, number>): Map<string, number> {
    const now = this.now();
    for (const [instanceId, deadline] of holders) if (deadline <= now) holders.delete(instanceId);
    return holders;
  }
}
