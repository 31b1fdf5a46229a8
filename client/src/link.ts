import { ApolloLink, HttpLink } from '@apollo/client';
import { getMainDefinition, isSubscriptionOperation } from '@apollo/client/utilities';
import { Kind, OperationTypeNode, type DocumentNode } from 'graphql';
import { map, Observable } from 'rxjs';
import type { RetryOptions } from './backoff.js';
import { SessionEndedError, unauthenticated } from './errors.js';
import { NewestMessages } from './newest.js';
import { SessionKeeper, type Session, type SessionLock, type SessionSource } from './session.js';
import { createSocket } from './socket.js';
import { subscribe } from './subscription.js';

/** Options of `createChatLink` (README, "Connect from Apollo Client"). */
export interface ChatLinkOptions {
  /** `https://…/graphql`: queries and mutations. */
  httpUrl: string;
  /** `wss://…/graphql`: subscriptions (and in-band session refreshes while the socket is open); a function is asked at each connect. */
  wsUrl: string | (() => string | Promise<string>);
  /** The session from `signUp`/`logIn`, or a function that reads it (e.g. from storage); null when signed out. */
  session: SessionSource;
  /** A WebSocket implementation, e.g. the `ws` package under Node.js; the browser's `WebSocket` by default. */
  webSocketImpl?: unknown;
  /** Told after each refresh, to store the new tokens (the old refresh token no longer works); a promise returned is awaited. */
  onSessionChange?: (session: Session) => unknown;
  /**
   * Makes the refreshes of a stored session shared by several tabs or processes take turns. By
   * default the Web Locks API where the runtime has it (browsers); elsewhere pass one (e.g. a file
   * lock) if processes share a stored session.
   */
  sessionLock?: SessionLock;
  /** Told once when the server refuses or revokes the session (log in again). */
  onSessionEnd?: (reason: string) => void;
  /**
   * Told each time the WebSocket is acknowledged again after it was lost. `roomEvents` and
   * `messageAdded` resume by themselves; `myEvents` starts afresh, so read `rooms` again then
   * (unread counts changed while the socket was down).
   */
  onReconnected?: () => void;
  /** Backoff between reconnects. Default: from 250 ms doubling to 10 s, with jitter. */
  retry?: RetryOptions;
  /** `fetch` for HTTP; the global one by default. */
  fetch?: typeof fetch;
  /** How often the socket is pinged; a missing pong within half of it drops and reconnects the socket (ms). Default 10000. */
  keepAliveMs?: number;
  /** How long opening the WebSocket, and then the server's acknowledgement, may each take before the socket is given up and tried again (ms). Default 10000. */
  connectTimeoutMs?: number;
  /** How long a session refresh over HTTP waits for its answer before it is tried again (ms). Default 10000. */
  refreshTimeoutMs?: number;
}

/** The link, with what an application may need besides: the session now, a new session, and disposal. */
export interface ChatLink extends ApolloLink {
  /** The current session (null when signed out). */
  session(): Promise<Session | null>;
  /** Replaces the session, e.g. after `logIn`; null signs out (subscriptions then end UNAUTHENTICATED). */
  setSession(session: Session | null): void;
  /** Closes the WebSocket and stops refreshing. */
  dispose(): Promise<void>;
}

/** Mutations that start a session: they run without one. */
const SIGN_IN = new Set(['signUp', 'logIn']);

/** Whether a document is a mutation whose root fields all sign in (`signUp`, `logIn`). */
function signsIn(query: DocumentNode): boolean {
  const definition = getMainDefinition(query);
  if (definition.kind !== Kind.OPERATION_DEFINITION || definition.operation !== OperationTypeNode.MUTATION) return false;
  const fields = definition.selectionSet.selections.filter((s) => !(s.kind === Kind.FIELD && s.name.value === '__typename'));
  return fields.length > 0 && fields.every((s) => s.kind === Kind.FIELD && SIGN_IN.has(s.name.value));
}

/**
 * An Apollo Link for this API: queries and mutations over HTTP with the current access token,
 * subscriptions over graphql-ws. `roomEvents` and `messageAdded` survive any reconnect: each is
 * re-subscribed with `after` = the cursor of the last event the application received, anything at
 * or below it is dropped, and reconnecting goes on (backoff with jitter) through 1001, 1006, 1011,
 * 1012, 1013, a refused connection and a stream the server ended with SERVICE_UNAVAILABLE. The session is refreshed in-band before it expires (over
 * the open socket, which renews it in place, else over HTTP). A refused or revoked session reaches
 * the application at once as an `UNAUTHENTICATED` error, never after retries. A message's state
 * older than one the link has already given never reaches the cache (`NewestMessages`).
 */
export function createChatLink(options: ChatLinkOptions): ChatLink {
  const fetchImpl = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
  const keeper = new SessionKeeper(options.session, {
    httpUrl: options.httpUrl,
    fetch: fetchImpl,
    refreshTimeoutMs: options.refreshTimeoutMs,
    lock: options.sessionLock,
    onSessionChange: options.onSessionChange,
    onSessionEnd: (reason) => {
      for (const end of active) end(reason);
      options.onSessionEnd?.(reason);
    },
  });
  /** Ends every running subscription with UNAUTHENTICATED (called when the session ends). */
  const active = new Set<(reason: string) => void>();
  /** Completes every running subscription (called on dispose). */
  const running = new Set<() => void>();
  const ws = createSocket(options, keeper);
  keeper.socketRefresh = ws.refresh;
  keeper.socketOpen = ws.isOpen;
  keeper.onSignIn = () => ws.client.terminate(); // the next connection authenticates as the new session, as after setSession
  // An answer that says the token it carried was refused (revoked elsewhere, account deleted),
  // whatever the operation — one that needs no session (`me`) answers null without an error: the
  // kit finds out whether the session stands (a refresh; `onSessionEnd` if it does not). A token
  // refused only for its age (an instance that stalled took the request up after its expiry, or a
  // refresh replaced it meanwhile) is renewed, and the request sent again once with the new one.
  const answersRefusal: typeof fetch = async (input, init) => {
    const response = await fetchImpl(input, init);
    if (!response.headers.get('www-authenticate')?.includes('invalid_token')) return response;
    const headers = { ...(init?.headers as Record<string, string> | undefined) };
    const sent = headers.authorization?.replace(/^Bearer /, '');
    if (!sent || !keeper.outdated(sent)) {
      keeper.refresh().catch(() => undefined);
      return response;
    }
    // Refreshed when due; once more if that refresh failed (one in-band over a socket the same
    // stall closed: the next goes over HTTP), not if the session ended.
    const token = await keeper
      .token()
      .catch((err: unknown) => (err instanceof SessionEndedError ? null : keeper.token()))
      .catch(() => null);
    if (!token || token === sent) return response;
    return fetchImpl(input, { ...init, headers: { ...headers, authorization: `Bearer ${token}` } });
  };

  const http = new ApolloLink((operation, forward) =>
    new Observable<ApolloLink.Result>((observer) => {
      let inner: { unsubscribe(): void } | undefined;
      let cancelled = false;
      // Signing in needs no session, also once one has ended (the application then signs in again).
      (signsIn(operation.query) ? Promise.resolve(null) : keeper.token()).then(
        (token) => {
          if (cancelled) return;
          if (token) operation.setContext(({ headers }: { headers?: Record<string, string> }) => ({ headers: { ...headers, authorization: `Bearer ${token}` } }));
          inner = forward(operation).subscribe(observer); // a refused token is found by its answer's header (`answersRefusal`)
        },
        (err: unknown) => observer.error(err instanceof SessionEndedError ? unauthenticated(err.message) : err),
      );
      return () => {
        cancelled = true;
        inner?.unsubscribe();
      };
    }),
  ).concat(new HttpLink({ uri: options.httpUrl, fetch: answersRefusal }));

  const subscriptions = new ApolloLink((operation) => subscribe(operation, ws.client, keeper, { active, running }, options.retry));
  const newest = new NewestMessages();
  const link = ApolloLink.from([
    new ApolloLink((operation, forward) => forward(operation).pipe(map((result) => newest.apply(result)))),
    ApolloLink.split(({ query }) => isSubscriptionOperation(query), subscriptions, http),
  ]) as ChatLink;
  return Object.assign(link, {
    session: () => keeper.session(),
    setSession: (session: Session | null) => {
      keeper.set(session);
      ws.client.terminate(); // the next connection authenticates as the new session
    },
    dispose: async () => {
      for (const end of [...running]) end(); // no subscription may reconnect a disposed link
      keeper.dispose();
      ws.dispose();
      // graphql-ws's dispose rethrows a connection attempt's failure (the server unreachable): disposed all the same.
      await Promise.resolve(ws.client.dispose()).catch(() => undefined);
    },
  });
}
