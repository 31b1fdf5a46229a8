import { CloseCode, handleProtocols, makeServer, type ServerOptions } from 'graphql-ws';
import type http from 'node:http';
import type { WebSocket, WebSocketServer } from 'ws';
import type { Logger } from '../logger';
import { CLOSE_GOING_AWAY } from './socket-sessions';

/** The messages a client sends in the graphql-transport-ws protocol (the others only a server sends). */
const FROM_CLIENTS = new Set(['connection_init', 'ping', 'pong', 'subscribe', 'complete']);

/** What graphql-ws keeps per socket from this transport. */
export interface WsTransportExtra {
  socket: WebSocket;
  request: http.IncomingMessage;
}

/**
 * graphql-ws's server (`makeServer`) on the sockets of `wsServer`, wired as graphql-ws's own `useServer`
 * (graphql-ws/use/ws) wires it, with two differences:
 * - what a client causes is not printed as a stack trace to standard error (any client could fill
 *   the logs that way) but logged once through `log`: a frame ws refuses (too large, malformed: ws
 *   closes the socket with 1009 or 1002 itself), a client gone while it was answered (a failed
 *   write is no error of this server), and a message of a type only a server sends
 *   (`next`, `error`, `connection_ack`), which graphql-ws takes for an error of this server (4500)
 *   and which is closed 4400 here, as the protocol answers a message it does not expect;
 * - no keep-alive timers per socket (`SocketGuard` pings every socket on one sweep).
 * A failure of this server's own hooks is logged as an error and closed 4500 "Internal server
 * error", without its message.
 */
export function serveGraphQLOverWebSocket<E extends object>(
  wsServer: WebSocketServer,
  options: ServerOptions<Record<string, unknown> | undefined, E & WsTransportExtra>,
  log: Logger,
): { dispose(): Promise<void> } {
  const server = makeServer(options);
  wsServer.options.handleProtocols = handleProtocols;
  wsServer.once('error', (err) => {
    log.error({ err }, 'the WebSocket server failed; closing its sockets');
    for (const client of wsServer.clients) client.close(CloseCode.InternalServerError, 'Internal server error');
  });
  wsServer.on('connection', (socket: WebSocket, request: http.IncomingMessage) => {
    socket.once('error', (err: Error & { code?: string }) => {
      log.info({ err: err.message, code: err.code }, 'a WebSocket sent a frame it may not; closed');
      if (socket.readyState === socket.OPEN) socket.close(CloseCode.BadRequest, 'Invalid frame');
    });
    const closed = server.opened(
      {
        protocol: socket.protocol,
        // A write that fails means the client is gone (ws closes the socket): nothing to answer.
        send: (data) =>
          new Promise<void>((resolve) => {
            if (socket.readyState !== socket.OPEN) return resolve();
            socket.send(data, () => resolve());
          }),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (handle) => {
          // A subscription's `handle` runs for its whole life: its frame keeps the text, not the raw
          // frame's Buffer (and the read chunk that Buffer may be a slice of).
          const handleText = async (text: string) => {
            try {
              await handle(text);
            } catch (err) {
              if (socket.readyState !== socket.OPEN) return void log.debug({ err: (err as Error).message }, 'a WebSocket went away while its message was handled');
              const type = serverOnlyType(text);
              if (type !== undefined) {
                log.info({ type }, 'a WebSocket sent a message only a server sends; closed');
                socket.close(CloseCode.BadRequest, `Unexpected message of type ${type}`);
                return;
              }
              log.error({ err }, 'handling a WebSocket message failed');
              socket.close(CloseCode.InternalServerError, 'Internal server error');
            }
          };
          socket.on('message', (data) => void handleText(String(data)));
        },
      },
      { socket, request } as E & WsTransportExtra,
    );
    socket.once('close', (code, reason) => void closed(code, String(reason)));
  });
  return {
    async dispose() {
      for (const client of wsServer.clients) client.close(CLOSE_GOING_AWAY, 'Going away');
      wsServer.removeAllListeners();
      await new Promise<void>((resolve, reject) => wsServer.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

/** The type of a graphql-ws message that only a server sends, or undefined (for any other text). */
function serverOnlyType(text: string): string | undefined {
  try {
    const { type } = JSON.parse(text) as { type?: unknown };
    return typeof type === 'string' && !FROM_CLIENTS.has(type) ? type : undefined;
  } catch {
    return undefined;
  }
}
