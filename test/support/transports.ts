// A bare graphql-transport-ws client (every frame visible, nothing retried) and a helper that sends
// one operation over HTTP and over WebSocket and tells what each answered.
import WebSocket from 'ws';
import { gql, type TestServer } from './harness';

/** A graphql-ws message as it travels. */
export type Frame = { id?: string; type: string; payload?: any };

export interface RawSocket {
  socket: WebSocket;
  send(frame: Frame): void;
  /** The first frame (received or still to come) that `match` accepts; rejects if the socket closes first. */
  next(match: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  frames: Frame[];
  /** The close code once closed. */
  closed(): number | undefined;
  whenClosed: Promise<number>;
  close(): void;
}

/**
 * Opens a socket with the graphql-transport-ws subprotocol and, with a token, completes
 * `connection_init`/`connection_ack`. `headers` go on the upgrade request (Origin, X-Forwarded-For).
 */
export async function rawSocket(wsUrl: string, token: string | null, headers: Record<string, string> = {}): Promise<RawSocket> {
  const socket = new WebSocket(wsUrl, 'graphql-transport-ws', { headers });
  const frames: Frame[] = [];
  let code: number | undefined;
  const whenClosed = new Promise<number>((resolve) =>
    socket.on('close', (c) => {
      code = c;
      resolve(c);
    }),
  );
  socket.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
  const raw: RawSocket = {
    socket,
    frames,
    send: (frame) => socket.send(JSON.stringify(frame)),
    next(match, timeoutMs = 10_000) {
      const found = frames.find(match);
      if (found) return Promise.resolve(found);
      if (code !== undefined) return Promise.reject(new Error(`socket closed with ${code} before the frame came`));
      // Woken by each frame and by the close, not by polling: the fuzz suite waits thousands of times.
      return new Promise<Frame>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          socket.off('message', onFrame);
          socket.off('close', onClose);
        };
        const onFrame = () => {
          const frame = frames.find(match);
          if (frame) {
            done();
            resolve(frame);
          }
        };
        const onClose = () => {
          done();
          reject(new Error(`socket closed with ${code} before the frame came`));
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no such frame within ${timeoutMs} ms: ${JSON.stringify(frames).slice(0, 1000)}`));
        }, timeoutMs);
        socket.on('message', onFrame);
        socket.on('close', onClose);
      });
    },
    closed: () => code,
    whenClosed,
    close: () => socket.close(),
  };
  if (token !== null) {
    raw.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
    await raw.next((f) => f.type === 'connection_ack');
  }
  return raw;
}

/** `ok`, or the `extensions.code` of the first error. */
export type Outcome = string;

let nextId = 0;

/** Runs one operation over a WebSocket: its outcome, and whether the socket stayed open. */
export async function overWebSocket(socket: RawSocket, payload: Record<string, unknown>): Promise<Outcome> {
  const id = `op${++nextId}`;
  socket.send({ id, type: 'subscribe', payload });
  const frame = await socket.next((f) => f.id === id && (f.type === 'error' || f.type === 'next'));
  if (frame.type === 'error') return frame.payload?.[0]?.extensions?.code ?? 'NO_CODE';
  return frame.payload?.errors?.[0]?.extensions?.code ?? 'ok';
}

/** Sends the operation over HTTP and over a fresh WebSocket; what each answered. */
export async function bothTransports(server: TestServer, query: string, variables: Record<string, unknown>, token?: string) {
  const result = await gql(server.url, query, variables, token);
  const http = result.errors?.length ? (result.errors[0].extensions?.code ?? 'NO_CODE') : 'ok';
  const socket = await rawSocket(server.wsUrl, token ?? null);
  try {
    const ws = await overWebSocket(socket, { query, variables });
    if (socket.closed() !== undefined) throw new Error(`socket closed with ${socket.closed()}`);
    return { http, ws };
  } finally {
    socket.close();
  }
}
