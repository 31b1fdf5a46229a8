// Apollo Client 4 with the client kit under Node (`ws` as the WebSocket), as a frontend team or a
// bot would run it, and the tallies the kit tests assert on.
import { ApolloClient, InMemoryCache } from '@apollo/client';
import WebSocket from 'ws';
import { chatCacheConfig, createChatLink, MessageAddedDocument, RoomEventsDocument, type ChatLink, type ChatLinkOptions, type Session } from '../../client';
import { must, unique, waitFor } from '../support/harness';

export const PASSWORD = 'correct horse battery';

/** A user and the session `signUp` gave them. */
export interface SignedUp {
  id: string;
  username: string;
  session: Session;
}

export async function signUpSession(url: string, username = unique()): Promise<SignedUp> {
  const data = await must(url, `mutation($input: SignUpInput!) { signUp(input: $input) { token expiresAt refreshToken user { id } } }`, {
    input: { username, password: PASSWORD },
  });
  const { token, expiresAt, refreshToken, user } = data.signUp;
  return { id: user.id, username, session: { token, expiresAt, refreshToken } };
}

export async function logInSession(url: string, username: string): Promise<Session> {
  const data = await must(url, `mutation($input: LogInInput!) { logIn(input: $input) { token expiresAt refreshToken } }`, {
    input: { username, password: PASSWORD },
  });
  return data.logIn;
}

/** An Apollo Client on the kit, with what the kit told it and how many sockets it opened. */
export interface KitClient {
  client: ApolloClient;
  link: ChatLink;
  /** Every session `onSessionChange` reported. */
  changes: Session[];
  /** Every reason `onSessionEnd` reported. */
  ended: string[];
  /** WebSockets opened so far. */
  sockets(): number;
  close(): Promise<void>;
}

const clients = new Set<KitClient>();

/** Disposes of every kit client still open (call from afterEach/afterAll). */
export async function closeKitClients(): Promise<void> {
  await Promise.all([...clients].map((c) => c.close()));
}

export function kitClient(
  httpUrl: string,
  wsUrl: ChatLinkOptions['wsUrl'],
  session: Session | (() => Promise<Session | null>),
  options: Partial<ChatLinkOptions> = {},
): KitClient {
  let sockets = 0;
  class CountingWebSocket extends WebSocket {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      sockets++;
    }
  }
  const changes: Session[] = [];
  const ended: string[] = [];
  const link = createChatLink({
    httpUrl,
    wsUrl,
    session,
    webSocketImpl: CountingWebSocket,
    onSessionChange: (s) => changes.push(s),
    onSessionEnd: (reason) => ended.push(reason),
    retry: { initialDelayMs: 100, maxDelayMs: 2000 },
    ...options,
  });
  const client = new ApolloClient({ link, cache: new InMemoryCache(chatCacheConfig) });
  const kit: KitClient = {
    client,
    link,
    changes,
    ended,
    sockets: () => sockets,
    async close() {
      clients.delete(kit);
      client.stop();
      await link.dispose();
    },
  };
  clients.add(kit);
  return kit;
}

/** What one subscription delivered, error and completion included. */
export interface Watched<T> {
  items: T[];
  errors: unknown[];
  readonly completed: boolean;
  until(predicate: () => boolean, timeoutMs?: number): Promise<void>;
  stop(): void;
}

function watch<T>(kit: KitClient, query: typeof MessageAddedDocument | typeof RoomEventsDocument, variables: { roomId: string; after?: string | null }, pick: (data: any) => T): Watched<T> {
  const items: T[] = [];
  const errors: unknown[] = [];
  let completed = false;
  const subscription = kit.client.subscribe({ query, variables, fetchPolicy: 'no-cache' }).subscribe({
    next: (result) => {
      if (result.error) errors.push(result.error);
      else if (result.data) items.push(pick(result.data));
    },
    error: (error) => errors.push(error),
    complete: () => (completed = true),
  });
  return {
    items,
    errors,
    get completed() {
      return completed;
    },
    until: (predicate, timeoutMs = 30_000) =>
      waitFor(() => predicate(), timeoutMs, () => `items ${items.length}, errors ${JSON.stringify(errors.map(String))}`).then(() => undefined),
    stop: () => subscription.unsubscribe(),
  };
}

/** `messageAdded` through the kit: the seq and body of each message. */
export const watchMessages = (kit: KitClient, roomId: string, after?: string) =>
  watch(kit, MessageAddedDocument, { roomId, after }, (d) => ({ seq: d.messageAdded.seq as number, body: d.messageAdded.body as string }));

/** One `roomEvents` event as the application received it. */
export interface SeenEvent {
  kind: string;
  /** The change number of the event's cursor (MessageAdded, MessageUpdated). */
  change?: number;
  id?: string;
  seq?: number;
  body?: string;
}

/** The change number in an event cursor (`e1:<room>:<n>`, base64url); the kit reads it the same way. */
export const changeOf = (cursor: string | undefined) => (cursor ? Number(Buffer.from(cursor, 'base64url').toString('utf8').split(':')[2]) : undefined);

/** `roomEvents` through the kit: each event's kind, change number, message id, seq and body. */
export const watchEvents = (kit: KitClient, roomId: string, after?: string) =>
  watch<SeenEvent>(kit, RoomEventsDocument, { roomId, after }, (d) => ({
    kind: d.roomEvents.__typename,
    change: changeOf(d.roomEvents.cursor),
    id: d.roomEvents.message?.id,
    seq: d.roomEvents.message?.seq,
    body: d.roomEvents.message?.body,
  }));

/** `roomEvents` through the kit: each event as the application received it (deltas included). */
export const watchRoomEvents = (kit: KitClient, roomId: string) => watch<Record<string, any>>(kit, RoomEventsDocument, { roomId }, (d) => d.roomEvents);

/**
 * What a roomEvents subscriber must show: every message added exactly once, change numbers strictly
 * increasing (nothing twice, nothing out of order), and the last state it saw of each message equal
 * to the truth (nothing lost). Events come in change order, not seq order: a message added and then
 * edited while the subscriber was away is replayed once, in its current state, at its edit's place
 * (docs/guarantees.md, guarantee 8), so `outOfOrder` (by seq) of the MessageAdded events is informative only.
 */
export function tallyEvents(events: SeenEvent[], expectedMessages: number, truth: Map<string, string>) {
  const added = events.filter((e) => e.kind === 'MessageAdded').map((e) => e.seq!);
  const changes = events.filter((e) => e.change !== undefined).map((e) => e.change!);
  let changesOutOfOrder = 0;
  for (let i = 1; i < changes.length; i++) if (changes[i] <= changes[i - 1]) changesOutOfOrder++;
  const last = new Map<string, string>();
  for (const e of events) if (e.id) last.set(e.id, e.body!);
  const stale = [...truth].filter(([id, body]) => last.get(id) !== body).length;
  return { ...tally(added, expectedMessages), updates: events.filter((e) => e.kind === 'MessageUpdated').length, changesOutOfOrder, stale };
}

/** The seqs of the message events among `events` (MessageAdded, MessageUpdated), in order: presence, typing and member changes carry none. */
export const messageSeqs = (events: SeenEvent[]): number[] => events.flatMap((e) => (e.seq === undefined ? [] : [e.seq]));

/** Lost, duplicated and out-of-order counts of a delivered seq list against 1..expected. */
export function tally(seqs: number[], expected: number) {
  const seen = new Set<number>();
  let duplicated = 0;
  let outOfOrder = 0;
  let last = 0;
  for (const seq of seqs) {
    if (seen.has(seq)) duplicated++;
    else if (seq < last) outOfOrder++;
    seen.add(seq);
    last = Math.max(last, seq);
  }
  let lost = 0;
  for (let seq = 1; seq <= expected; seq++) if (!seen.has(seq)) lost++;
  return { delivered: seqs.length, lost, duplicated, outOfOrder };
}

/** The extensions.code of an error Apollo Client reported. */
export const codeOf = (error: unknown) => (error as { errors?: Array<{ extensions?: { code?: string } }> })?.errors?.[0]?.extensions?.code;
