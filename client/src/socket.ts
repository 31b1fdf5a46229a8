import type { GraphQLFormattedError } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import { backoffDelay } from './backoff.js';
import { AUTH_CLOSE_CODES, FATAL_CLOSE_CODES, SessionEndedError, isCloseEvent } from './errors.js';
import type { ChatLinkOptions } from './link.js';
import { REFRESH_SESSION, type RefreshAnswer, type SessionKeeper } from './session.js';

/** How long opening the WebSocket, then its acknowledgement, may take by default before it is given up and tried again (ms). */
export const CONNECT_TIMEOUT_MS = 10_000;

/** The graphql-ws client: retries everything but a refused session, keeps the socket alive, refreshes over it. */
export function createSocket(options: ChatLinkOptions, keeper: SessionKeeper) {
  /** The server acknowledged the socket (graphql-ws's `connected`), and it has not closed since. */
  let acknowledged = false;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;
  let ackTimer: ReturnType<typeof setTimeout> | undefined;
  /** The socket made last, whatever its state (a new one is made only once it has closed). */
  let latest: WebSocket | undefined;
  const pending = new Set<() => void>();
  const keepAliveMs = options.keepAliveMs ?? 10_000;
  const connectTimeoutMs = options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
  /** A socket was acknowledged before: the next acknowledgement is a reconnect. */
  let connectedBefore = false;
  const client: Client = createClient({
    url: options.wsUrl,
    webSocketImpl: withHandshakeTimeout((options.webSocketImpl ?? globalThis.WebSocket) as typeof WebSocket | undefined, connectTimeoutMs, (socket) => (latest = socket)),
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
      opened: () => {
        // A server that opened the socket but never acknowledges it (its process stopped) is given
        // up at once: graphql-ws's own acknowledgement timeout closes the socket and waits for
        // the close handshake the silent server never answers (30 s in `ws`, 60 s in Chromium).
        ackTimer = setTimeout(() => client.terminate(), connectTimeoutMs);
      },
      connected: () => {
        clearTimeout(ackTimer);
        acknowledged = true;
        if (connectedBefore) options.onReconnected?.();
        connectedBefore = true;
      },
      closed: () => {
        clearTimeout(ackTimer);
        // A socket given up (`terminate`) is only closing: under Node.js `ws` still hands it frames,
        // which graphql-ws would pass to the subscriptions now resuming on the next socket.
        if (latest) latest.onmessage = null;
        acknowledged = false;
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
    if (!acknowledged) return undefined;
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

  return {
    client,
    refresh,
    isOpen: () => acknowledged,
    /** Stops the timers and gives up a connection under way, which graphql-ws's `dispose` would wait for. */
    dispose: () => {
      clearTimeout(pongTimer);
      clearTimeout(ackTimer);
      if (acknowledged || !latest) return; // graphql-ws closes an acknowledged one
      if (latest.readyState === latest.OPEN) client.terminate(); // opened, not acknowledged
      else if (latest.readyState === latest.CONNECTING) latest.close(); // its handshake unanswered
    },
  };
}

/**
 * `Impl` whose sockets (each told to `made`) give up an opening handshake not answered within `ms`: neither the
 * browser's WebSocket nor `ws` does (a stopped process whose kernel still accepts connections
 * holds it for minutes). Closed while connecting, the socket fails as an unreachable server's
 * would (1006), which graphql-ws retries.
 */
function withHandshakeTimeout(Impl: typeof WebSocket | undefined, ms: number, made: (socket: WebSocket) => void): typeof WebSocket | undefined {
  if (!Impl) return undefined; // graphql-ws says it needs an implementation
  const { CONNECTING } = Impl;
  return class extends Impl {
    constructor(...args: ConstructorParameters<typeof WebSocket>) {
      super(...args);
      made(this);
      const timer = setTimeout(() => this.readyState === CONNECTING && this.close(), ms);
      const settled = () => clearTimeout(timer);
      this.addEventListener('open', settled);
      this.addEventListener('close', settled);
    }
  };
}
