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

/** `roomEvents` through the kit: each event's kind, message seq and body (or delta). */
export const watchEvents = (kit: KitClient, roomId: string, after?: string) =>
  watch(kit, RoomEventsDocument, { roomId, after }, (d) => ({
    kind: d.roomEvents.__typename as string,
    seq: d.roomEvents.message?.seq as number | undefined,
    body: d.roomEvents.message?.body as string | undefined,
  }));

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
