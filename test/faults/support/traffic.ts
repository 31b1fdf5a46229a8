// Senders and subscribers for the fault scenarios: every send carries a clientId (so a retry is
// safe), every answer is recorded, and every subscription records what it received and how it closed.
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { encodeMessageCursor } from '../../../src/chat/cursors';
import { createRoom, must, waitFor, type TestUser } from '../../support/harness';
import { roomTruth } from './backing';
import type { ChangeTraffic } from './changes';
import type { Seen } from './tally';

/** The longest a single send may take before the scenario counts it as hung. */
export const SEND_TIMEOUT_MS = 15_000;

/** Where and as whom a message is sent. */
export interface Target {
  url: string;
  user: TestUser;
}

export interface Acked extends Seen {
  cursor: string;
  clientId: string;
}

/** The answer to one send: the message, or how it failed (HTTP or GraphQL error, network error, timeout). */
export type SendOutcome =
  | { ok: true; message: Acked; ms: number }
  | { ok: false; clientId: string; url: string; ms: number; status?: number; code?: string; error: string; raw?: string; network?: boolean; hung?: boolean };

/** How an attempt failed, as a retry policy sees it (a send's or a change's). */
export interface Failure {
  url: string;
  code?: string;
  error: string;
  network?: boolean;
  hung?: boolean;
}

const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) { id seq cursor clientId } }`;

/** Sends one message (a reply in `parentId`'s thread when given); never throws: a failure is described in the outcome. */
export async function sendOnce(target: Target, roomId: string, body: string, clientId: string, timeoutMs = SEND_TIMEOUT_MS, parentId?: string): Promise<SendOutcome> {
  const started = Date.now();
  const ms = () => Date.now() - started;
  let res: Response;
  try {
    res = await fetch(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${target.user.token}` },
      body: JSON.stringify({ query: SEND, variables: { input: { roomId, body, clientId, ...(parentId ? { parentId } : {}) } } }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const hung = e.name === 'TimeoutError';
    return { ok: false, clientId, url: target.url, ms: ms(), network: !hung, hung, error: `${e.message}${e.cause ? `: ${e.cause.code ?? e.cause.message}` : ''}` };
  }
  let raw: string;
  try {
    raw = await res.text();
  } catch (err) {
    const e = err as Error;
    const hung = e.name === 'TimeoutError';
    return { ok: false, clientId, url: target.url, ms: ms(), status: res.status, hung, network: !hung, error: e.message };
  }
  let answer: { data?: { sendMessage?: Acked }; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  try {
    answer = JSON.parse(raw);
  } catch {
    return { ok: false, clientId, url: target.url, ms: ms(), status: res.status, error: 'the answer is not JSON', raw };
  }
  if (answer.data?.sendMessage && !answer.errors?.length) return { ok: true, message: answer.data.sendMessage, ms: ms() };
  const first = answer.errors?.[0];
  return { ok: false, clientId, url: target.url, ms: ms(), status: res.status, code: first?.extensions?.code, error: first?.message ?? 'no data', raw };
}

/** Every acknowledged message and every failed attempt of a scenario. */
export class Ledger {
  readonly acked = new Map<string, Acked>();
  readonly failures: Array<Extract<SendOutcome, { ok: false }>> = [];
  readonly latencies: number[] = [];
  /** Messages answered twice with different ids for one clientId (guarantee 4 broken). */
  readonly conflicting: Array<{ clientId: string; ids: string[] }> = [];
  private readonly byClientId = new Map<string, string>();

  record(outcome: SendOutcome): SendOutcome {
    this.latencies.push(outcome.ms);
    if (!outcome.ok) {
      this.failures.push(outcome);
      return outcome;
    }
    const m = outcome.message;
    const known = this.byClientId.get(m.clientId);
    if (known && known !== m.id) this.conflicting.push({ clientId: m.clientId, ids: [known, m.id] });
    this.byClientId.set(m.clientId, m.id);
    this.acked.set(m.id, m);
    return outcome;
  }

  get sent(): number {
    return this.acked.size;
  }

  messages(): Acked[] {
    return [...this.acked.values()].sort((x, y) => x.seq - y.seq);
  }

  get lastSeq(): number {
    let last = 0;
    for (const m of this.acked.values()) last = Math.max(last, m.seq);
    return last;
  }
}

export interface BurstOptions {
  ledger: Ledger;
  roomId: string;
  /** Prefix of the bodies and clientIds. */
  label: string;
  /** How many messages; unbounded (until `stop()`) when omitted. */
  count?: number;
  /** Senders working at once. */
  concurrency: number;
  /** Where message `i` goes (called again for each retry, with the attempt number). */
  target(i: number, attempt: number): Target;
  /** Whether to try a failed message or change again (same clientId, same change); default: never. */
  retry?(outcome: Failure, attempt: number): boolean;
  /**
   * Changes to make during the burst: this fraction (`changes.ratio`) of the operations edit, react
   * to or delete an earlier message instead of sending (counted on top of `count`), and some sends
   * are thread replies. A change that fails and is not retried waits in `changes.pending`.
   */
  changes?: ChangeTraffic;
  /** Sends answered with an error are counted here and the sender moves on; default true. */
  continueOnFailure?: boolean;
}

/** A running burst of sends: resolves when `count` messages were attempted or after `stop()`. */
export interface Burst {
  done: Promise<void>;
  stop(): Promise<void>;
  /** Messages attempted so far. */
  readonly started: number;
}

/** Sends messages with `concurrency` senders at once, recording every answer in the ledger. */
export function burst(options: BurstOptions): Burst {
  let next = 0;
  let changed = 0;
  let stopped = false;
  const { ledger, roomId, label, changes } = options;
  const worker = async () => {
    while (!stopped && (options.count === undefined || next < options.count)) {
      const planned = changes && Math.random() < changes.ratio ? changes.plan() : undefined;
      if (planned) {
        const j = changed++;
        await changes!.make(planned, (attempt) => options.target(j, attempt).url, options.retry);
        continue;
      }
      const i = next++;
      const clientId = `${label}-${i}`;
      const parentId = changes?.replyParent();
      for (let attempt = 0; ; attempt++) {
        const target = options.target(i, attempt);
        const outcome = ledger.record(await sendOnce(target, roomId, `${label} ${i}`, clientId, SEND_TIMEOUT_MS, parentId));
        if (outcome.ok) changes?.noteSent(outcome.message, target.user, parentId);
        if (outcome.ok || !options.retry?.(outcome, attempt)) break;
      }
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, worker)).then(() => undefined);
  return {
    done,
    async stop() {
      stopped = true;
      await done;
    },
    get started() {
      return next;
    },
  };
}

/** A subscription result's message fields (kept free of database-backed fields like `author`). */
export const FEED = `subscription($roomId: ID!, $after: String) {
  messageAdded(roomId: $roomId, after: $after) { id seq cursor }
}`;

/** The cursor before a room's first message: subscribing after it delivers the whole room. */
export const roomStart = (roomId: string) => encodeMessageCursor(roomId, 0);

/**
 * One logical subscriber that may connect several times (resuming with its last cursor), and
 * records everything it received in order, every close code and every error.
 */
export class Subscriber {
  readonly received: Array<Seen & { cursor: string; session: number }> = [];
  readonly closeCodes: number[] = [];
  readonly errors: unknown[] = [];
  /** Sessions that ended (completed or errored) although the test did not end them. */
  ended = 0;
  sessions = 0;
  private client?: Client;

  constructor(
    readonly name: string,
    readonly roomId: string,
    /** The cursor of the first connection (default: the room's start). */
    readonly firstCursor = roomStart(roomId),
  ) {}

  /** Where the next connection resumes: the last message received, or the first cursor. */
  get lastCursor(): string {
    return this.received.at(-1)?.cursor ?? this.firstCursor;
  }

  get lastSeq(): number {
    return this.received.reduce((max, m) => Math.max(max, m.seq), 0);
  }

  /** Connects to `wsUrl` as `user` and subscribes after `after` (default: its last cursor). */
  connect(wsUrl: string, user: TestUser, after = this.lastCursor): void {
    const session = ++this.sessions;
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${user.token}` },
      retryAttempts: 0,
      lazy: true,
      on: { closed: (event) => this.closeCodes.push((event as { code: number }).code) },
    });
    this.client = client;
    client.subscribe<{ messageAdded: { id: string; seq: number; cursor: string } }>(
      { query: FEED, variables: { roomId: this.roomId, after } },
      {
        next: (result) => {
          if (this.client !== client) return; // a connection it has left: the next one resumes after what it kept
          const m = result.data?.messageAdded;
          if (m) this.received.push({ id: m.id, seq: m.seq, cursor: m.cursor, session });
          if (result.errors?.length) this.errors.push(result.errors);
        },
        error: (err) => {
          if (this.client === client) this.ended++;
          this.errors.push(err);
        },
        complete: () => {
          if (this.client === client) this.ended++;
        },
      },
    );
  }

  /** Closes the current connection (the subscriber goes offline). */
  async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.dispose();
  }

  /** Waits until it received the room's newest message as the database holds it. */
  reachTruth(truth: { lastSeq: number }, timeoutMs?: number): Promise<void> {
    return this.reach(truth.lastSeq, timeoutMs);
  }

  /** Waits until it received a message with seq `seq` or beyond. */
  async reach(seq: number, timeoutMs = 30_000): Promise<void> {
    await waitFor(() => this.lastSeq >= seq, timeoutMs, () => `${this.name} reached seq ${this.lastSeq} of ${seq} (${this.received.length} received, errors ${JSON.stringify(this.errors).slice(0, 500)})`);
  }
}

/** Subscribers of a test, disconnected after it whatever happened. */
export class Subscribers {
  private readonly all: Array<{ disconnect(): Promise<void> }> = [];

  add<S extends { disconnect(): Promise<void> }>(subscriber: S): S {
    this.all.push(subscriber);
    return subscriber;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.all.splice(0).map((s) => s.disconnect().catch(() => undefined)));
  }
}

/** Resolves after `ms`: only to let an outage last, never to wait for a result. */
export const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Waits until every subscriber has the room's newest message (and, for a roomEvents subscriber,
 * its latest change) as the database holds them, then `quietMs` more so that a late duplicate
 * would be counted; resolves to what the database holds.
 */
export async function settle(
  databaseUrl: string,
  roomId: string,
  subscribers: Array<{ reachTruth(truth: { lastSeq: number; lastChange: number }, timeoutMs?: number): Promise<void> }>,
  quietMs: number,
  reachTimeoutMs?: number,
) {
  const truth = await roomTruth(databaseUrl, roomId);
  await Promise.all(subscribers.map((s) => s.reachTruth(truth, reachTimeoutMs)));
  await pause(quietMs);
  return truth;
}

/** Median and maximum of a list of durations. */
export function spread(values: number[]): { p50: number; max: number } {
  if (!values.length) return { p50: 0, max: 0 };
  const sorted = [...values].sort((x, y) => x - y);
  return { p50: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] };
}

/** A public room owned by the first user and joined by the others; resolves to its id. */
export async function roomWith(url: string, users: TestUser[]): Promise<string> {
  const roomId = await createRoom(url, users[0]);
  await Promise.all(users.slice(1).map((u) => must(url, `mutation($r: ID!) { joinRoom(roomId: $r) { id } }`, { r: roomId }, u.token)));
  return roomId;
}

/** The base address (`http://host:port`) of a GraphQL endpoint URL. */
export const baseOf = (graphqlUrl: string) => graphqlUrl.replace(/\/graphql$/, '');

/** `promise`, or `fallback` when it has not settled within `ms` (the timer is cleared either way). */
export async function within<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
