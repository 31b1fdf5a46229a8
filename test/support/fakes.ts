import type { MessageModel } from '../../src/chat/models';
import { membershipKey, type RoomHead, type RoomStore } from '../../src/chat/room-store';

export type Method = 'range' | 'changes' | 'changedSince' | 'streaming' | 'head' | 'heads' | 'insertChange' | 'seqAt' | 'members' | 'memberships';

/**
 * Fields of a message that the hub and feeds pass along without reading. Spread into each new
 * message, so the fake keeps compiling while such fields are added to `MessageWire`.
 */
const UNREAD_FIELDS = { mentions: [] as string[] };

interface Room {
  /** Messages by seq (index seq - 1), each in its current state. */
  messages: MessageModel[];
  lastChange: number;
}

/**
 * An in-memory RoomStore over each room's messages and change log, as PostgreSQL keeps them:
 * messages numbered by seq 1, 2, 3, …; every insert and every later change of a message takes the
 * room's next change number, and a message row holds only its latest one (`changeSeq`), so a
 * number whose message changed again is superseded and no row holds it. Records calls; can fail
 * (as during a database outage) or hold calls until released.
 */
export class FakeStore {
  readonly calls: { method: Method; args: unknown[] }[] = [];
  /** While true, every call fails as during a database outage. */
  down = false;
  /** Finer control: a call fails when this returns true. */
  failIf?: (method: Method) => boolean;
  /** Runs on entry of every call (before any hold), e.g. to look at the world at that moment. */
  onCall?: (method: Method) => void;
  private readonly rooms = new Map<string, Room>();
  private readonly removed = new Map<string, Set<string>>();
  private readonly holds = new Map<Method, Promise<void>>();

  /** Commits `count` new messages, each with the room's next seq and next change number. */
  append(roomId: string, count = 1): MessageModel[] {
    const room = this.room(roomId);
    const added: MessageModel[] = [];
    for (let i = 0; i < count; i++) {
      const seq = room.messages.length + 1;
      const change = ++room.lastChange;
      const message: MessageModel = {
        ...UNREAD_FIELDS,
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
        createdChange: change,
        changeSeq: change,
        editedAt: null,
        deletedAt: null,
        reactions: [],
        replyCount: 0,
        lastReplyAt: null,
      };
      room.messages.push(message);
      added.push(message);
    }
    return added;
  }

  /**
   * Commits a change of message `seq` (by default an edit of its body): the message moves to the
   * room's next change number, superseding its previous one. Returns its new state (earlier
   * states stay as they were, so a test can still publish them).
   */
  change(roomId: string, seq: number, patch: Partial<MessageModel> = {}): MessageModel {
    const room = this.room(roomId);
    const before = room.messages[seq - 1];
    if (!before) throw new Error(`no message ${seq} in ${roomId}`);
    const change = ++room.lastChange;
    const after: MessageModel = {
      ...before,
      body: `message ${seq} (edited at change ${change})`,
      editedAt: new Date(Date.UTC(2024, 0, 2, 0, 0, change)),
      ...patch,
      changeSeq: change,
    };
    room.messages[seq - 1] = after;
    return after;
  }

  /** Saves a streaming reply's text so far, outside the change log (as `ReplyStore.savePartial`): no change number. */
  saveStreaming(roomId: string, seq: number, body: string, deltaCount: number): MessageModel {
    const room = this.room(roomId);
    room.messages[seq - 1] = { ...room.messages[seq - 1], status: 'STREAMING', body, deltaCount };
    return room.messages[seq - 1];
  }

  /** A stored message in its current state, without recording a call. */
  get(roomId: string, seq: number): MessageModel {
    return this.room(roomId).messages[seq - 1];
  }

  /** The room's newest seq and latest change number, without recording a call. */
  headOf(roomId: string): RoomHead {
    const room = this.rooms.get(roomId);
    return { lastSeq: room?.messages.length ?? 0, lastChange: room?.lastChange ?? 0 };
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
    return this.messagesOf(roomId).filter((m) => m.seq > afterSeq && m.seq <= uptoSeq).slice(0, limit);
  }

  async changes(roomId: string, afterChange: number, uptoChange: number, limit: number): Promise<MessageModel[]> {
    await this.enter('changes', [roomId, afterChange, uptoChange, limit]);
    return this.messagesOf(roomId)
      .filter((m) => m.changeSeq > afterChange && m.changeSeq <= uptoChange)
      .sort((a, b) => a.changeSeq - b.changeSeq)
      .slice(0, limit);
  }

  async changedSince(roomId: string, afterChange: number, seqs: number[]): Promise<boolean> {
    await this.enter('changedSince', [roomId, afterChange, [...seqs]]);
    return this.messagesOf(roomId).some((m) => m.changeSeq > afterChange && seqs.includes(m.seq));
  }

  async streaming(roomIds: string[]): Promise<MessageModel[]> {
    await this.enter('streaming', [[...roomIds]]);
    return roomIds.flatMap((roomId) => this.messagesOf(roomId).filter((m) => m.status === 'STREAMING'));
  }

  async head(roomId: string): Promise<RoomHead> {
    await this.enter('head', [roomId]);
    return this.headOf(roomId);
  }

  async heads(roomIds: string[]): Promise<Map<string, RoomHead>> {
    await this.enter('heads', [[...roomIds]]);
    return new Map(roomIds.map((roomId) => [roomId, this.headOf(roomId)]));
  }

  async insertChange(roomId: string, seq: number): Promise<number | undefined> {
    await this.enter('insertChange', [roomId, seq]);
    return this.messagesOf(roomId)[seq - 1]?.createdChange;
  }

  async seqAt(roomId: string, change: number): Promise<number> {
    await this.enter('seqAt', [roomId, change]);
    return this.messagesOf(roomId).filter((m) => m.createdChange <= change).at(-1)?.seq ?? 0;
  }

  async members(roomId: string, userIds: string[]): Promise<Set<string>> {
    await this.enter('members', [roomId, [...userIds]]);
    const removed = this.removed.get(roomId) ?? new Set<string>();
    return new Set(userIds.filter((u) => !removed.has(u)));
  }

  async memberships(pairs: Array<[string, string]>): Promise<Set<string>> {
    await this.enter('memberships', [pairs.map((pair) => [...pair])]);
    return new Set(pairs.filter(([roomId, userId]) => !this.removed.get(roomId)?.has(userId)).map(([roomId, userId]) => membershipKey(roomId, userId)));
  }

  asStore(): RoomStore {
    return this as unknown as RoomStore;
  }

  private room(roomId: string): Room {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = { messages: [], lastChange: 0 };
      this.rooms.set(roomId, room);
    }
    return room;
  }

  private messagesOf(roomId: string): MessageModel[] {
    return this.rooms.get(roomId)?.messages ?? [];
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
