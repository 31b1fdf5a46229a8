import type { MessageModel } from '../../src/chat/models';
import type { RoomStore } from '../../src/chat/room-store';

export type Method = 'range' | 'lastSeq' | 'members';

/** An in-memory RoomStore: messages per room numbered 1, 2, 3, …; records calls; can fail or hold. */
export class FakeStore {
  readonly calls: { method: Method; args: unknown[] }[] = [];
  /** While true, every call fails as during a database outage. */
  down = false;
  /** Finer control: a call fails when this returns true. */
  failIf?: (method: Method) => boolean;
  /** Runs on entry of every call (before any hold), e.g. to look at the world at that moment. */
  onCall?: (method: Method) => void;
  private readonly messages = new Map<string, MessageModel[]>();
  private readonly removed = new Map<string, Set<string>>();
  private readonly holds = new Map<Method, Promise<void>>();

  append(roomId: string, count = 1): MessageModel[] {
    const list = this.messages.get(roomId) ?? [];
    this.messages.set(roomId, list);
    const added: MessageModel[] = [];
    for (let i = 0; i < count; i++) {
      const seq = list.length + 1;
      const message: MessageModel = {
        id: `${roomId}-m${seq}`,
        roomId,
        seq,
        authorId: 'author',
        body: `message ${seq}`,
        parentId: null,
        clientId: null,
        status: 'COMPLETE',
        statusReason: null,
        deltaCount: 0,
        createdAt: new Date(Date.UTC(2024, 0, 1, 0, 0, seq)),
      };
      list.push(message);
      added.push(message);
    }
    return added;
  }

  /** A stored message, without recording a call. */
  get(roomId: string, seq: number): MessageModel {
    return this.messages.get(roomId)![seq - 1];
  }

  last(roomId: string): number {
    return this.messages.get(roomId)?.length ?? 0;
  }

  removeMember(roomId: string, userId: string): void {
    const set = this.removed.get(roomId) ?? new Set<string>();
    set.add(userId);
    this.removed.set(roomId, set);
  }

  /** Holds calls of `method` until the returned function is called. */
  hold(method: Method): () => void {
    let release!: () => void;
    this.holds.set(method, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.holds.delete(method);
      release();
    };
  }

  callsOf(method: Method): unknown[][] {
    return this.calls.filter((c) => c.method === method).map((c) => c.args);
  }

  async range(roomId: string, afterSeq: number, uptoSeq: number, limit: number): Promise<MessageModel[]> {
    await this.enter('range', [roomId, afterSeq, uptoSeq, limit]);
    return (this.messages.get(roomId) ?? []).filter((m) => m.seq > afterSeq && m.seq <= uptoSeq).slice(0, limit);
  }

  async lastSeq(roomId: string): Promise<number> {
    await this.enter('lastSeq', [roomId]);
    return this.last(roomId);
  }

  async members(roomId: string, userIds: string[]): Promise<Set<string>> {
    await this.enter('members', [roomId, [...userIds]]);
    const removed = this.removed.get(roomId) ?? new Set<string>();
    return new Set(userIds.filter((u) => !removed.has(u)));
  }

  asStore(): RoomStore {
    return this as unknown as RoomStore;
  }

  private async enter(method: Method, args: unknown[]): Promise<void> {
    this.calls.push({ method, args });
    this.onCall?.(method);
    const hold = this.holds.get(method);
    if (hold) await hold;
    if (this.down || this.failIf?.(method)) throw new Error('connect ECONNREFUSED (fake outage)');
  }
}

/** A logger that records calls and prints nothing. */
export function silentLogger() {
  const log = {
    warn: jest.fn(),
    info: jest.fn(),
    error: jest.fn(),
    debug: jest.fn(),
    trace: jest.fn(),
    fatal: jest.fn(),
    child: () => log,
  };
  return log;
}

/** Waits (yielding to the event loop, no fixed sleep) until `condition` holds. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}
