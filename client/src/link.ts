import { ApolloLink, HttpLink } from '@apollo/client';
import { CombinedGraphQLErrors } from '@apollo/client/errors';
import { isSubscriptionOperation, print } from '@apollo/client/utilities';
import type { FormattedExecutionResult, GraphQLFormattedError } from 'graphql';
import { createClient, type Client, type SubscribePayload } from 'graphql-ws';
import { Observable } from 'rxjs';
import { backoffDelay, type RetryOptions } from './backoff';
import { AUTH_CLOSE_CODES, FATAL_CLOSE_CODES, SessionEndedError, hasUnauthenticated, isCloseEvent, unauthenticated } from './errors';
import { ResumeTracker, resumableFieldOf, withResumeSelections } from './resume';
import { REFRESH_SESSION, SessionKeeper, type RefreshAnswer, type Session, type SessionSource } from './session';

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
  /** Told after each refresh, to store the new tokens (the old refresh token no longer works). */
  onSessionChange?: (session: Session) => void;
  /** Told once when the server refuses or revokes the session (log in again). */
  onSessionEnd?: (reason: string) => void;
  /** Backoff between reconnects. Default: from 250 ms doubling to 10 s, with jitter. */
  retry?: RetryOptions;
  /** `fetch` for HTTP; the global one by default. */
  fetch?: typeof fetch;
  /** How often the socket is pinged; a missing pong within half of it drops and reconnects the socket (ms). Default 10000. */
  keepAliveMs?: number;
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

/**
 * An Apollo Link for this API: queries and mutations over HTTP with the current access token,
 * subscriptions over graphql-ws. `roomEvents` and `messageAdded` survive any reconnect: each is
 * re-subscribed with `after` = the cursor of the last event the application received, anything at
 * or below it is dropped, and reconnecting goes on (backoff with jitter) through 1001, 1006, 1011,
 * 1012, 1013 and a refused connection. The session is refreshed in-band before it expires (over
 * the open socket, which renews it in place, else over HTTP). A refused or revoked session reaches
 * the application at once as an `UNAUTHENTICATED` error, never after retries.
 */
export function createChatLink(options: ChatLinkOptions): ChatLink {
  const fetchImpl = options.fetch ?? ((...args: Parameters<typeof fetch>) => fetch(...args));
  const keeper = new SessionKeeper(options.session, {
    httpUrl: options.httpUrl,
    fetch: fetchImpl,
    onSessionChange: options.onSessionChange,
    onSessionEnd: (reason) => {
      for (const end of active) end(reason);
      options.onSessionEnd?.(reason);
    },
  });
  /** Ends every running subscription with UNAUTHENTICATED (called when the session ends). */
  const active = new Set<(reason: string) => void>();
  const ws = createSocket(options, keeper);
  keeper.socketRefresh = ws.refresh;

  const http = new ApolloLink((operation, forward) =>
    new Observable<ApolloLink.Result>((observer) => {
      let inner: { unsubscribe(): void } | undefined;
      let cancelled = false;
      keeper.token().then(
        (token) => {
          if (cancelled) return;
          if (token) operation.setContext(({ headers }: { headers?: Record<string, string> }) => ({ headers: { ...headers, authorization: `Bearer ${token}` } }));
          inner = forward(operation).subscribe({
            next: (result) => {
              // A token refused mid-session (revoked elsewhere, account deleted): find out whether the session stands.
              if (token && hasUnauthenticated((result as FormattedExecutionResult).errors)) keeper.refresh().catch(() => undefined);
              observer.next(result);
            },
            error: (err) => observer.error(err),
            complete: () => observer.complete(),
          });
        },
        (err: unknown) => observer.error(err instanceof SessionEndedError ? unauthenticated(err.message) : err),
      );
      return () => {
        cancelled = true;
        inner?.unsubscribe();
      };
    }),
  ).concat(new HttpLink({ uri: options.httpUrl, fetch: fetchImpl }));

  const subscriptions = new ApolloLink((operation) => subscribe(operation, ws.client, keeper, active, options.retry));
  const link = ApolloLink.split(({ query }) => isSubscriptionOperation(query), subscriptions, http) as ChatLink;
  return Object.assign(link, {
    session: () => keeper.session(),
    setSession: (session: Session | null) => {
      keeper.set(session);
      ws.client.terminate(); // the next connection authenticates as the new session
    },
    dispose: async () => {
      keeper.dispose();
      ws.dispose();
      await ws.client.dispose();
    },
  });
}

/** The graphql-ws client: retries everything but a refused session, keeps the socket alive, refreshes over it. */
function createSocket(options: ChatLinkOptions, keeper: SessionKeeper) {
  let open: { readyState: number; OPEN?: number } | undefined;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  const pending = new Set<() => void>();
  const keepAliveMs = options.keepAliveMs ?? 10_000;
  const client: Client = createClient({
    url: options.wsUrl,
    webSocketImpl: options.webSocketImpl,
    lazy: true,
    lazyCloseTimeout: 3000,
    keepAlive: keepAliveMs,
    retryAttempts: Infinity,
    shouldRetry: (errOrClose) => !(isCloseEvent(errOrClose) && (AUTH_CLOSE_CODES.has(errOrClose.code) || FATAL_CLOSE_CODES.has(errOrClose.code))),
    retryWait: (retries) => new Promise((resolve) => setTimeout(resolve, backoffDelay(retries, options.retry))),
    connectionParams: async () => {
      const token = await keeper.token(); // refreshes first when the token is about to expire
      return token ? { authorization: `Bearer ${token}` } : {};
    },
    on: {
      connected: (socket) => (open = socket as typeof open),
      closed: () => {
        open = undefined;
        clearTimeout(pongTimer);
        // A refresh in flight must not be re-sent on the next socket: its token may already be spent.
        for (const abandon of [...pending]) abandon();
      },
      ping: (received) => {
        if (received) return;
        clearTimeout(pongTimer);
        pongTimer = setTimeout(() => client.terminate(), keepAliveMs / 2);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
    },
  });

  /** `refreshSession` on the open socket (so the server renews it), or undefined when none is open. */
  const refresh = (refreshToken: string): Promise<RefreshAnswer> | undefined => {
    if (!open) return undefined;
    return new Promise<RefreshAnswer>((resolve, reject) => {
      let answer: RefreshAnswer | undefined;
      const abandon = () => {
        pending.delete(abandon);
        dispose();
        reject(new Error('The WebSocket closed before refreshSession answered'));
      };
      pending.add(abandon);
      const dispose = client.subscribe<RefreshAnswer['data']>(
        { query: REFRESH_SESSION, operationName: 'RefreshSession', variables: { refreshToken } },
        {
          next: (result) => (answer = result as RefreshAnswer),
          error: (err) => {
            pending.delete(abandon);
            if (Array.isArray(err)) resolve({ errors: err as GraphQLFormattedError[] });
            else reject(err instanceof Error ? err : new Error('The WebSocket closed before refreshSession answered'));
          },
          complete: () => {
            pending.delete(abandon);
            if (answer) resolve(answer);
            else reject(new Error('refreshSession answered nothing'));
          },
        },
      );
    });
  };

  return { client, refresh, dispose: () => clearTimeout(pongTimer) };
}

/**
 * One subscription through graphql-ws. A resumable one (`roomEvents`, `messageAdded`) is sent with
 * a payload whose `variables.after` follows the last event delivered, so graphql-ws's own retry
 * re-sends the current position; where graphql-ws gives up (e.g. 1011, or a failed refresh while
 * reconnecting), the kit subscribes again itself from the same position, after a backoff.
 */
function subscribe(
  operation: ApolloLink.Operation,
  client: Client,
  keeper: SessionKeeper,
  active: Set<(reason: string) => void>,
  retry: RetryOptions | undefined,
): Observable<ApolloLink.Result> {
  return new Observable<ApolloLink.Result>((observer) => {
    const resumable = resumableFieldOf(operation.query);
    const document = resumable ? withResumeSelections(operation.query, resumable.field) : operation.query;
    const tracker = resumable ? new ResumeTracker(resumable.field, resumable.key) : undefined;
    // graphql-ws re-sends this very payload when it reconnects: `variables.after` follows the position.
    const variables: Record<string, unknown> = { ...operation.variables };
    const payload: SubscribePayload = { query: print(document), operationName: operation.operationName, variables, extensions: operation.extensions };
    let attempt = 0;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let dispose: (() => void) | undefined;

    const finish = (error?: unknown) => {
      if (stopped) return;
      stopped = true;
      active.delete(endSession);
      clearTimeout(timer);
      dispose?.();
      if (error) observer.error(error);
      else observer.complete();
    };
    const endSession = (reason: string) => finish(unauthenticated(reason));
    active.add(endSession);

    const again = () => {
      if (stopped) return;
      timer = setTimeout(start, backoffDelay(attempt++, retry));
    };
    const failed = (err: unknown) => {
      if (stopped) return;
      if (keeper.ended) return endSession(keeper.ended);
      if (Array.isArray(err)) {
        const errors = err as GraphQLFormattedError[];
        return hasUnauthenticated(errors) ? keeper.end(errors[0].message) : finish(new CombinedGraphQLErrors({ data: null, errors }));
      }
      if (isCloseEvent(err) && AUTH_CLOSE_CODES.has(err.code)) {
        if (err.reason !== 'Token expired') return keeper.end(err.reason || 'The server refused the session');
        // Expired before a refresh renewed it (e.g. the machine slept): refresh, then resume.
        return void keeper.refresh().then(start, (e: unknown) => (e instanceof SessionEndedError ? endSession(e.message) : again()));
      }
      if (isCloseEvent(err) && FATAL_CLOSE_CODES.has(err.code)) return finish(new Error(`The server refused the subscription: ${err.code} ${err.reason}`));
      again(); // 1011 and other close codes graphql-ws treats as final, a failed refresh while reconnecting …
    };

    function start() {
      if (stopped) return;
      if (tracker?.cursor) variables.after = tracker.cursor;
      dispose = client.subscribe(payload, {
        next: (result) => {
          attempt = 0;
          if (tracker && !tracker.accept(result.data as Record<string, unknown> | null)) return;
          observer.next(result as ApolloLink.Result);
          if (tracker?.cursor) variables.after = tracker.cursor;
        },
        error: failed,
        complete: () => finish(),
      });
    }
    keeper.session().then(
      (session) => (session ? start() : finish(unauthenticated('Not signed in: give the link a session (setSession) first'))),
      (err: unknown) => finish(err),
    );
    return () => {
      stopped = true;
      active.delete(endSession);
      clearTimeout(timer);
      dispose?.();
    };
  });
}
