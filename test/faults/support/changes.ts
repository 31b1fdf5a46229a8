// Changes during the bursts (API.md guarantees 8 and 10): edits, reactions added and removed,
// deletions and thread replies on earlier messages, every answer recorded; the levels they are
// counted by are explained in message-state.ts.
import type { TestUser } from '../../support/harness';
import { levelOf, reactionName, STATE_FIELDS, type AckedChange, type Component, type MessageState } from './message-state';
import { SEND_TIMEOUT_MS } from './traffic';

/** One change a client makes. */
export type ChangeOp =
  | { kind: 'edit'; messageId: string; body: string; user: TestUser }
  | { kind: 'addReaction' | 'removeReaction'; messageId: string; emoji: string; user: TestUser; tag: string; n: number }
  | { kind: 'deleteMessage'; messageId: string; user: TestUser };

const MUTATIONS: Record<ChangeOp['kind'], string> = {
  edit: `mutation($input: EditMessageInput!) { answer: editMessage(input: $input) { ${STATE_FIELDS} } }`,
  addReaction: `mutation($input: ReactionInput!) { answer: addReaction(input: $input) { ${STATE_FIELDS} } }`,
  removeReaction: `mutation($input: ReactionInput!) { answer: removeReaction(input: $input) { ${STATE_FIELDS} } }`,
  deleteMessage: `mutation($messageId: ID!) { answer: deleteMessage(messageId: $messageId) { ${STATE_FIELDS} } }`,
};

const variablesOf = (op: ChangeOp) =>
  op.kind === 'edit'
    ? { input: { messageId: op.messageId, body: op.body } }
    : op.kind === 'deleteMessage'
      ? { messageId: op.messageId }
      : { input: { messageId: op.messageId, emoji: op.emoji } };

/** The answer to one change: the message's new state, or how it failed. */
export type ChangeOutcome =
  | { ok: true; state: MessageState; ms: number }
  | { ok: false; op: ChangeOp['kind']; url: string; ms: number; code?: string; error: string; network?: boolean; hung?: boolean };

/** Makes one change over HTTP; never throws. */
export async function changeOnce(url: string, op: ChangeOp, timeoutMs = SEND_TIMEOUT_MS): Promise<ChangeOutcome> {
  const started = Date.now();
  const ms = () => Date.now() - started;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${op.user.token}` },
      body: JSON.stringify({ query: MUTATIONS[op.kind], variables: variablesOf(op) }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const raw = await res.text();
    let answer: { data?: { answer?: MessageState }; errors?: Array<{ message: string; extensions?: { code?: string } }> };
    try {
      answer = JSON.parse(raw);
    } catch {
      return { ok: false, op: op.kind, url, ms: ms(), error: `HTTP ${res.status}, the answer is not JSON: ${raw.slice(0, 200)}` };
    }
    if (answer.data?.answer && !answer.errors?.length) return { ok: true, state: answer.data.answer, ms: ms() };
    const first = answer.errors?.[0];
    return { ok: false, op: op.kind, url, ms: ms(), code: first?.extensions?.code, error: first?.message ?? `HTTP ${res.status}, no data` };
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const hung = e.name === 'TimeoutError';
    return { ok: false, op: op.kind, url, ms: ms(), network: !hung, hung, error: `${e.message}${e.cause ? `: ${e.cause.code ?? e.cause.message}` : ''}` };
  }
}

/** What the traffic knows of one message it may change. */
interface Tracked {
  id: string;
  seq: number;
  author: TestUser;
  root: boolean;
  deleted: boolean;
  edits: number;
  /** Each user's window of reaction names (by tag). */
  windows: Map<string, { lo: number; hi: number }>;
  /** Components with an op in flight or unsettled: only one op per component at a time. */
  busy: Set<Component>;
}

export interface ChangeTrafficOptions {
  /** The room's members: index 0 is the OWNER (it may delete anyone's message). */
  members: TestUser[];
  /** Fraction of a burst's operations that are changes rather than sends (default 0.2). */
  ratio?: number;
  /** Fraction of sends that reply in the thread of an earlier message (default 0.1). */
  replyRatio?: number;
}

/** How many of the newest messages get half of the changes. */
const HOT = 5;

type Planned = { op: ChangeOp; component: Component; message: Tracked };

/**
 * The changes a scenario makes and everything they were answered. `burst` asks it for the next
 * change (`plan`), makes it (`make`) and records the answer; an op that failed without
 * being retried stays `pending` (its component busy) until `settlePending` makes it again.
 */
export class ChangeTraffic {
  readonly acked: AckedChange[] = [];
  readonly failures: Array<Extract<ChangeOutcome, { ok: false }>> = [];
  /** Ops refused with CONFLICT because the message was deleted first (each checked at the end). */
  readonly refused: Array<{ op: ChangeOp['kind']; messageId: string }> = [];
  readonly pending: Planned[] = [];
  readonly latencies: number[] = [];
  replies = 0;
  private readonly messages: Tracked[] = [];
  /** Who has reacted to which message (each pair once). */
  private readonly reacted: Array<{ message: Tracked; user: TestUser }> = [];
  private readonly tags: Map<string, string>;

  constructor(readonly options: ChangeTrafficOptions) {
    this.tags = new Map(options.members.map((u, i) => [u.id, `u${i}`]));
  }

  get ratio(): number {
    return this.options.ratio ?? 0.2;
  }

  /** Counts of acknowledged changes by kind. */
  counts(): Record<string, number> {
    const counts: Record<string, number> = { replies: this.replies, refusedAfterDelete: this.refused.length };
    for (const c of this.acked) counts[c.op] = (counts[c.op] ?? 0) + 1;
    return counts;
  }

  /** Remembers an acknowledged send (a message later changes may target). */
  noteSent(message: { id: string; seq: number }, author: TestUser, parentId?: string): void {
    if (this.messages.some((m) => m.id === message.id)) return; // a retry answered with the first message
    if (parentId) this.replies++;
    this.messages.push({ id: message.id, seq: message.seq, author, root: !parentId, deleted: false, edits: 0, windows: new Map(), busy: new Set() });
  }

  /** A thread root to reply to, for a fraction of sends; undefined for a plain send. */
  replyParent(): string | undefined {
    if (Math.random() >= (this.options.replyRatio ?? 0.1)) return undefined;
    const roots = this.messages.filter((m) => m.root);
    return roots.length ? roots[Math.floor(Math.random() * roots.length)].id : undefined;
  }

  /** The next change to make (marking its component busy), or undefined when none is possible now. */
  plan(): Planned | undefined {
    // A third of the time, a user who already reacted to a message reacts again: reactions come and go.
    const again = Math.random() < 0.3 ? this.reacted[Math.floor(Math.random() * this.reacted.length)] : undefined;
    if (again && !again.message.deleted && !again.message.busy.has('life')) {
      const planned = this.reaction(again.message, again.user);
      if (!again.message.busy.has(planned.component)) {
        again.message.busy.add(planned.component);
        return planned;
      }
    }
    for (let tries = 0; tries < 10; tries++) {
      // Half on the newest few (so changes of one message race and reactions come and go), half on any earlier one.
      const from = Math.random() < 0.5 ? Math.max(0, this.messages.length - HOT) : 0;
      const message = this.messages[from + Math.floor(Math.random() * (this.messages.length - from))];
      if (!message || message.deleted || message.busy.has('life')) continue;
      const planned = this.choose(message);
      if (!planned || message.busy.has(planned.component)) continue;
      message.busy.add(planned.component);
      return planned;
    }
    return undefined;
  }

  private choose(message: Tracked): Planned | undefined {
    const roll = Math.random();
    const { members } = this.options;
    if (roll < 0.08) {
      const user = Math.random() < 0.5 ? message.author : members[0];
      return { message, component: 'life', op: { kind: 'deleteMessage', messageId: message.id, user } };
    }
    if (roll < 0.4) {
      const body = `edited ${message.seq} ✎${message.edits + 1}`;
      return { message, component: 'body', op: { kind: 'edit', messageId: message.id, body, user: message.author } };
    }
    return this.reaction(message, members[Math.floor(Math.random() * members.length)]);
  }

  /** `user` adds the next reaction name to `message`, or removes its oldest one. */
  private reaction(message: Tracked, user: TestUser): Planned {
    const tag = this.tags.get(user.id)!;
    const window = message.windows.get(tag) ?? { lo: 0, hi: 0 };
    const size = window.hi - window.lo;
    // Never down to no reaction once there was one: an empty window would hide how far it came.
    const add = size < 2 || (size < 3 && Math.random() < 0.5);
    const n = add ? window.hi : window.lo;
    const kind = add ? ('addReaction' as const) : ('removeReaction' as const);
    return { message, component: `react:${tag}`, op: { kind, messageId: message.id, emoji: reactionName(tag, n), user, tag, n } };
  }

  /**
   * Makes a planned change, trying again while `retry` says so (with the url `urlFor(attempt)`);
   * records the answer. Resolves true when it was answered (acknowledged or refused).
   */
  async make(planned: Planned, urlFor: (attempt: number) => string, retry?: (outcome: Extract<ChangeOutcome, { ok: false }>, attempt: number) => boolean): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      const outcome = await changeOnce(urlFor(attempt), planned.op);
      this.latencies.push(outcome.ms);
      if (this.settle(planned, outcome)) return true;
      if (!retry?.(outcome as Extract<ChangeOutcome, { ok: false }>, attempt)) {
        this.pending.push(planned); // its component stays busy until settlePending
        return false;
      }
    }
  }

  /** Makes every pending change again (as a client retries after an outage) until each is answered; resolves to how many there were. */
  async settlePending(url: string, attempts = 5): Promise<number> {
    const queue = this.pending.splice(0);
    for (const planned of queue) {
      for (let attempt = 0; attempt < attempts; attempt++) {
        const outcome = await changeOnce(url, planned.op);
        this.latencies.push(outcome.ms);
        if (this.settle(planned, outcome)) break;
        if (attempt === attempts - 1) this.pending.push(planned);
      }
    }
    return queue.length;
  }

  /** Records one answer; true when the change is settled (no need to try again). */
  private settle({ op, component, message }: Planned, outcome: ChangeOutcome): boolean {
    if (!outcome.ok) {
      if (outcome.code === 'CONFLICT') {
        this.refused.push({ op: op.kind, messageId: op.messageId });
        message.deleted = true;
        message.busy.delete(component);
        return true;
      }
      this.failures.push(outcome);
      return false;
    }
    const { state } = outcome;
    this.acked.push({ messageId: op.messageId, component, level: levelOf(state, component), op: op.kind });
    if (state.deleted) message.deleted = true;
    if (op.kind === 'edit') message.edits++;
    if (op.kind === 'addReaction' || op.kind === 'removeReaction') {
      const window = message.windows.get(op.tag) ?? { lo: 0, hi: 0 };
      if (window.hi === 0) this.reacted.push({ message, user: op.user });
      message.windows.set(op.tag, op.kind === 'addReaction' ? { lo: window.lo, hi: op.n + 1 } : { lo: op.n + 1, hi: window.hi });
    }
    message.busy.delete(component);
    return true;
  }
}
