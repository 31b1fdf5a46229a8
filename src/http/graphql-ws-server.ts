import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type http from 'node:http';
import type { RawData, WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../logger';
import { CLOSE_GOING_AWAY } from './socket-sessions';

/** The messages a client sends in the graphql-transport-ws protocol (the others only a server sends). */
const FROM_CLIENTS = new Set(['connection_init', 'ping', 'pong', 'subscribe', 'complete']);

/** What graphql-ws keeps per socket from this transport. */
export interface WsTransportExtra {
  socket: WebSocket;
  request: http.IncomingMessage;
  /**
   * The length of the message being handed to graphql-ws, for `onSubscribe` (which graphql-ws calls
   * before anything of its own awaits): a subscription's handler keeps its message for its life.
   */
  messageLength?: number;
}

/**
 * graphql-ws's server (`makeServer`) on the sockets of `wsServer`, wired as graphql-ws's own `useServer`
 * (graphql-ws/use/ws) wires it, with these differences:
 * - what a client causes is not printed as a stack trace to standard error (any client could fill
 *   the logs that way) but logged once through `log`: a frame ws refuses (too large, malformed: ws
 *   closes the socket with 1009 or 1002 itself), a client gone while it was answered (a failed
 *   write is no error of this server), and a message of a type only a server sends
 *   (`next`, `error`, `connection_ack`), which graphql-ws takes for an error of this server (4500)
 *   and which is closed 4400 here, as the protocol answers a message it does not expect;
 * - no keep-alive timers per socket (`SocketGuard` pings every socket on one sweep);
 * - a `subscribe` that reuses the id of an operation the client just completed waits for that
 *   operation's end (`ReusedIds`);
 * - no closure per socket: one `SocketTransport` object each, listeners shared by all.
 * A failure of this server's own hooks is logged as an error and closed 4500 "Internal server
 * error", without its message.
 */
export function serveGraphQLOverWebSocket<E extends object>(
  wsServer: WebSocketServer,
  options: ServerOptions<Record<string, unknown> | undefined, E & WsTransportExtra>,
  log: Logger,
  operations: {
    /** Whether the socket's operation `id` is still running (graphql-ws has not yet called `onComplete` for it). */
    running: (extra: E & WsTransportExtra, id: string) => boolean;
    /** Told when the client completes its operation `id` while it runs, once graphql-ws has been told. */
    completedByClient: (extra: E & WsTransportExtra, id: string) => void;
  },
): { dispose(): Promise<void> } {
  const server = makeServer(options);
  wsServer.options.handleProtocols = handleProtocols;
  wsServer.once('error', (err) => {
    log.error({ err }, 'the WebSocket server failed; closing its sockets');
    for (const client of wsServer.clients) client.close(CloseCode.InternalServerError, 'Internal server error');
  });
  const shared: Shared<E> = { log, ...operations };
  wsServer.on('connection', (socket: WebSocket, request: http.IncomingMessage) => {
    const transport = new SocketTransport<E>(socket, { socket, request } as E & WsTransportExtra, shared);
    transports.set(socket, transport);
    socket.on('error', onSocketError);
    transport.closed = server.opened(transport, transport.extra);
    socket.on('message', onSocketMessage);
    socket.on('close', onSocketClose); // a WebSocket closes once
  });
  return {
    async dispose() {
      for (const client of wsServer.clients) client.close(CLOSE_GOING_AWAY, 'Going away');
      wsServer.removeAllListeners();
      await new Promise<void>((resolve, reject) => wsServer.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** What the transports of all sockets share. */
interface Shared<E extends object> {
  log: Logger;
  running: (extra: E & WsTransportExtra, id: string) => boolean;
  completedByClient: (extra: E & WsTransportExtra, id: string) => void;
}

/** Each socket's transport, for the listeners every socket shares (`this` is the socket). */
const transports = new WeakMap<WebSocket, Pick<SocketTransport<object>, 'received' | 'closed'> & { shared: { log: Logger } }>();

function onSocketMessage(this: WebSocket, data: RawData): void {
  transports.get(this)?.received(String(data));
}

function onSocketClose(this: WebSocket, code: number, reason: Buffer): void {
  void transports.get(this)?.closed?.(code, String(reason));
}

function onSocketError(this: WebSocket, err: Error & { code?: string }): void {
  transports.get(this)?.shared.log.info({ err: err.message, code: err.code }, 'a WebSocket sent a frame it may not; closed');
  if (this.readyState === this.OPEN) this.close(CloseCode.BadRequest, 'Invalid frame');
}

/**
 * graphql-ws's view of one socket. One object per socket with its methods shared, and the socket's
 * listeners shared by every socket: a socket holds no closures of this module.
 */
class SocketTransport<E extends object> {
  readonly protocol: string;
  /** graphql-ws's handler of the socket's messages. */
  private handle?: (text: string) => Promise<void>;
  /** Made at the client's first `complete`. */
  private reuse?: ReusedIds;
  /** Tells graphql-ws the socket closed. */
  closed?: (code: number, reason: string) => Promise<void>;

  constructor(
    private readonly socket: WebSocket,
    readonly extra: E & WsTransportExtra,
    readonly shared: Shared<E>,
  ) {
    this.protocol = socket.protocol;
  }

  /** A write that fails means the client is gone (ws closes the socket): nothing to answer. */
  send(data: string): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.socket.readyState !== this.socket.OPEN) return resolve();
      this.socket.send(data, () => resolve());
    });
  }

  close(code: number, reason: string): void {
    this.socket.close(code, reason);
  }

  onMessage(handle: (text: string) => Promise<void>): void {
    this.handle = handle;
  }

  received(text: string): void {
    if (!this.reuse && text.includes('"complete"')) {
      this.reuse = new ReusedIds(
        this.socket,
        (t) => this.handleText(t),
        (id) => this.shared.running(this.extra, id),
        (id) => this.shared.completedByClient(this.extra, id),
      );
    }
    if (this.reuse) this.reuse.received(text);
    else void this.handleText(text);
  }

  /**
   * Hands a message to graphql-ws. A subscription's handler runs for its whole life: what waits for
   * its end keeps nothing of the message (not the raw frame's Buffer, nor the read chunk that Buffer
   * may be a slice of, nor the text), and is a promise reaction, not a suspended async function.
   */
  handleText(text: string): Promise<void> {
    if (!this.handle) return Promise.resolve();
    const serverOnly = serverOnlyType(text);
    this.extra.messageLength = text.length;
    return this.handle(text).then(undefined, (err: unknown) => this.failed(err, serverOnly));
  }

  private failed(err: unknown, serverOnly: string | undefined): void {
    const { socket, shared } = this;
    if (socket.readyState !== socket.OPEN) return void shared.log.debug({ err: (err as Error).message }, 'a WebSocket went away while its message was handled');
    if (serverOnly !== undefined) {
      shared.log.info({ type: serverOnly }, 'a WebSocket sent a message only a server sends; closed');
      socket.close(CloseCode.BadRequest, `Unexpected message of type ${serverOnly}`);
      return;
    }
    shared.log.error({ err }, 'handling a WebSocket message failed');
    socket.close(CloseCode.InternalServerError, 'Internal server error');
  }
}

/** Longest a `subscribe` reusing a completed operation's id waits for that operation to end. */
const REUSE_WAIT_MS = 5000;

/**
 * A client may reuse an operation's id once it has sent `complete` for it (graphql-transport-ws).
 * But graphql-ws's server lets the old operation's handler finish after the `complete`, and what
 * it does last (`complete` to the client if the id is registered, then unregistering the id) hits a
 * new operation registered meanwhile under the same id: the client is told the new one completed,
 * and the new one is cancelled. So a `subscribe` whose id the client completed while that
 * operation still ran waits until it has ended (`running` says no more, then one turn of the event
 * loop for the handler's last steps; at most REUSE_WAIT_MS), and the socket's later messages wait
 * behind it, in order. The operation is told it was completed (`completedByClient`) right after
 * graphql-ws, so that one that would go on (a query or mutation waiting its turn, or waiting for
 * the database) can end at once rather than hold the id, and the socket, that long. Made for a
 * socket when its client first sends `complete`.
 */
class ReusedIds {
  /** Ids the client completed while they ran, each with the end of the wait for them. */
  private ending?: Map<string, Promise<void>>;
  /** While a `subscribe` waits: the end of the socket's queue of messages. */
  private behind?: Promise<void>;

  constructor(
    private readonly socket: WebSocket,
    private readonly handle: (text: string) => Promise<void>,
    private readonly running: (id: string) => boolean,
    private readonly completedByClient: (id: string) => void,
  ) {}

  received(text: string): void {
    if (this.behind) return this.hold(this.dispatchAfter(this.behind, text));
    const waiting = this.dispatch(text);
    if (waiting) this.hold(waiting);
  }

  /** `dispatch` once `until` has settled, unless the socket has closed meanwhile. */
  private dispatchAfter(until: Promise<void>, text: string): Promise<void> {
    return until.then(() => (this.socket.readyState === this.socket.OPEN ? this.dispatch(text) : undefined));
  }

  /** Hands the message to graphql-ws, or answers how long it must wait. */
  private dispatch(text: string): Promise<void> | undefined {
    const message = this.ending || text.includes('"complete"') ? peek(text) : undefined;
    if (typeof message?.id !== 'string') {
      void this.handle(text);
      return undefined;
    }
    const { type } = message;
    const id: string = message.id;
    const cancelling = type === 'complete' && this.running(id);
    if (cancelling) this.completed(id);
    const waitFor = type === 'subscribe' ? this.ending?.get(id) : undefined;
    if (waitFor) return this.dispatchAfter(waitFor, text);
    void this.handle(text);
    if (cancelling) this.completedByClient(id);
    return undefined;
  }

  /** The socket's later messages wait until `until`, in order. */
  private hold(until: Promise<void>): void {
    const held: Promise<void> = until.then(() => {
      if (this.behind === held) this.behind = undefined;
    });
    this.behind = held;
  }

  /** The client completed operation `id`, still running: a `subscribe` with its id waits for its end. */
  private completed(id: string): void {
    const ending = (this.ending ??= new Map());
    if (ending.has(id)) return;
    const until = Date.now() + REUSE_WAIT_MS;
    const ended = new Promise<void>((resolve) => {
      const check = () => {
        if (this.running(id) && Date.now() < until) return void setTimeout(check, 1).unref();
        ending.delete(id);
        if (this.ending === ending && ending.size === 0) this.ending = undefined;
        setImmediate(resolve); // the handler's last steps (unregistering the id) come right after
      };
      setImmediate(check);
    });
    ending.set(id, ended);
  }
}

/** A client message's type and id as it sent them; undefined for text that is not a JSON object. */
function peek(text: string): { type?: unknown; id?: unknown } | undefined {
  try {
    const message: unknown = JSON.parse(text);
    return typeof message === 'object' && message !== null ? (message as { type?: unknown; id?: unknown }) : undefined;
  } catch {
    return undefined;
  }
}

/** The type of a graphql-ws message that only a server sends, or undefined (for any other text). */
function serverOnlyType(text: string): string | undefined {
  const type = peek(text)?.type;
  return typeof type === 'string' && !FROM_CLIENTS.has(type) ? type : undefined;
}
