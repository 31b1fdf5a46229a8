// A WebSocket proxy between a client and the server, so a test can close the client's side with any
// close code (1001, 1011, 1012, 1013 …), drop it without a close frame (1006), or refuse new
// connections for a while — the faults a client kit must ride through.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export interface WsProxy {
  /** `ws://127.0.0.1:<port>/graphql` */
  url: string;
  /** Connections made through it so far. */
  readonly connections: number;
  /** Closes every client socket with `code` (and its upstream). */
  closeAll(code: number, reason?: string): void;
  /** Drops every client socket without a close frame: the client sees 1006. */
  dropAll(): void;
  /** Stops forwarding in both directions without closing anything: a half-open connection, as when a network drops. */
  freeze(): void;
  /** Refuses connections (the port stops listening) until `resume()`. */
  refuse(): Promise<void>;
  resume(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a proxy to `target` (a `ws://…/graphql` URL) on a free port. */
export async function startWsProxy(target: string): Promise<WsProxy> {
  const pairs = new Set<{ client: WebSocket; upstream: WebSocket; frozen?: boolean }>();
  let connections = 0;
  let http: Server;
  let port = 0;
  const listen = async () => {
    http = createServer();
    const wss = new WebSocketServer({ server: http, handleProtocols: (protocols) => [...protocols][0] ?? false });
    wss.on('connection', (client, req) => {
      connections++;
      const upstream = new WebSocket(target, client.protocol, { headers: { origin: req.headers.origin ?? '' } });
      const pair: { client: WebSocket; upstream: WebSocket; frozen?: boolean } = { client, upstream };
      pairs.add(pair);
      const queued: Array<[WebSocket.RawData, boolean]> = [];
      // ws answers pings by itself; a frozen pair must not, or it would not look dead.
      client.on('message', (data, isBinary) => {
        if (pair.frozen) return;
        if (upstream.readyState === WebSocket.OPEN) upstream.send(data, { binary: isBinary });
        else queued.push([data, isBinary]);
      });
      upstream.on('open', () => queued.splice(0).forEach(([data, isBinary]) => upstream.send(data, { binary: isBinary })));
      upstream.on('message', (data, isBinary) => !pair.frozen && client.readyState === WebSocket.OPEN && client.send(data, { binary: isBinary }));
      const end = () => pairs.delete(pair);
      upstream.on('close', (code, reason) => {
        end();
        if (client.readyState === WebSocket.OPEN) client.close(code === 1005 || code === 1006 ? 1011 : code, reason.toString());
      });
      client.on('close', () => {
        end();
        upstream.terminate();
      });
      upstream.on('error', () => client.terminate());
      client.on('error', () => upstream.terminate());
    });
    await new Promise<void>((resolve) => http.listen(port, '127.0.0.1', resolve));
    port = (http.address() as AddressInfo).port;
  };
  await listen();
  const closeListener = () =>
    new Promise<void>((resolve) => {
      http.close(() => resolve());
      http.closeAllConnections?.();
    });
  const proxy: WsProxy = {
    get url() {
      return `ws://127.0.0.1:${port}/graphql`;
    },
    get connections() {
      return connections;
    },
    closeAll(code, reason = 'proxy closed it') {
      for (const { client, upstream } of [...pairs]) {
        client.close(code, reason);
        upstream.terminate();
      }
    },
    dropAll() {
      for (const { client, upstream } of [...pairs]) {
        client.terminate();
        upstream.terminate();
      }
    },
    freeze() {
      for (const pair of pairs) pair.frozen = true;
    },
    async refuse() {
      proxy.dropAll();
      await closeListener();
    },
    resume: listen,
    async stop() {
      proxy.dropAll();
      await closeListener();
    },
  };
  return proxy;
}
