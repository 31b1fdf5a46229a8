import type { GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { backoffDelay } from './backoff';
import { AUTH_CLOSE_CODES, FATAL_CLOSE_CODES, SessionEndedError, isCloseEvent } from './errors';
import type { ChatLinkOptions } from './link';
import { REFRESH_SESSION, type RefreshAnswer, type SessionKeeper } from './session';

/** The graphql-ws client: retries everything but a refused session, keeps the socket alive, refreshes over it. */
export function createSocket(options: ChatLinkOptions, keeper: SessionKeeper) {
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
    shouldRetry: (errOrClose) =>
      !(errOrClose instanceof SessionEndedError) && // thrown by connectionParams: the session is over
      !(isCloseEvent(errOrClose) && (AUTH_CLOSE_CODES.has(errOrClose.code) || FATAL_CLOSE_CODES.has(errOrClose.code))),
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
      // An answer already received stands, whatever happens to the socket after it (its `complete`
      // lost with the socket): its refresh token is the one to keep, the old one is spent.
      const abandon = () => {
        pending.delete(abandon);
        dispose();
        if (answer) resolve(answer);
        else reject(new Error('The WebSocket closed before refreshSession answered'));
      };
      pending.add(abandon);
      const dispose = client.subscribe<RefreshAnswer['data']>(
        { query: REFRESH_SESSION, operationName: 'RefreshSession', variables: { refreshToken } },
        {
          next: (result) => (answer = result as RefreshAnswer),
          error: (err) => {
            pending.delete(abandon);
            if (Array.isArray(err)) resolve({ errors: err as GraphQLFormattedError[] });
            else if (answer) resolve(answer);
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
