import { createClient } from 'graphql-ws';
import { io } from 'socket.io-client';
import http from 'node:http';
import WebSocket from 'ws';
import type { Target } from './protocol';

/** Called for every message event a subscriber receives. */
export type OnMessage = (seq: number, body: string) => void;

/** What a subscriber tells its owner besides messages. */
export interface SubscriberEvents {
  message: OnMessage;
  /** A result with GraphQL errors (ours only). */
  errorResult(message: string): void;
  /** The subscription ended or failed before `close()`. */
  dropped(reason: string): void;
}

/** One open subscriber connection. */
export interface Subscriber {
  close(): void;
}

const CONNECT_TIMEOUT_MS = 30_000;

/**
 * The fields ours selects: by default the same data the reference emits; `BENCH_SELECTION` sets
 * them (with `seq` and `body`, which the tally reads), e.g. `id seq body createdAt author { id displayName }`.
 */
const MESSAGE_ADDED = `subscription($roomId: ID!) { messageAdded(roomId: $roomId) { ${process.env.BENCH_SELECTION ?? 'id seq body createdAt'} } }`;

/**
 * Opens one subscriber connection on `target` (the `index`-th of the scenario: it picks the
 * token and the room, `index % rooms`). Resolves once connected — for ours after `connection_ack`, with the subscribe already
 * sent; whether the server has started the subscription only shows when messages arrive.
 */
export function openSubscriber(target: Target, index: number, events: SubscriberEvents): Promise<Subscriber> {
  return target.system === 'ours' ? openGraphqlWs(target, index, events) : openSocketIo(target, index, events);
}

function openGraphqlWs(target: Target, index: number, events: SubscriberEvents): Promise<Subscriber> {
  const token = target.subscriberTokens[index % target.subscriberTokens.length];
  let closing = false;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error('graphql-ws: no connection_ack in time')), CONNECT_TIMEOUT_MS);
    const client = createClient({
      url: target.wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
      on: {
        connected: () => {
          clearTimeout(timer);
          resolve({
            close: () => {
              closing = true;
              void client.dispose();
            },
          });
        },
      },
    });
    const fail = (err: Error) => {
      clearTimeout(timer);
      closing = true;
      void client.dispose();
      reject(err);
    };
    client.subscribe<{ messageAdded: { seq: number; body: string } }>(
      { query: MESSAGE_ADDED, variables: { roomId: target.roomIds[index % target.roomIds.length] } },
      {
        next: (result) => {
          if (result.errors?.length) return events.errorResult(result.errors[0].message);
          const message = result.data?.messageAdded;
          if (message) events.message(message.seq, message.body);
        },
        error: (err) => {
          if (!closing) events.dropped(describe(err));
          fail(new Error(describe(err)));
        },
        complete: () => {
          if (!closing) events.dropped('subscription completed by the server');
        },
      },
    );
  });
}

function openSocketIo(target: Target, index: number, events: SubscriberEvents): Promise<Subscriber> {
  let closing = false;
  return new Promise((resolve, reject) => {
    // forceNew: one real connection per subscriber (the default multiplexes one per process).
    const socket = io(target.httpUrl, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: CONNECT_TIMEOUT_MS });
    socket.on('message', (message: { seq: number; body: string }) => events.message(message.seq, message.body));
    const subscribed = () =>
      resolve({
        close: () => {
          closing = true;
          socket.disconnect();
        },
      });
    // One room: everyone gets io.emit(). Several: the socket joins its room first.
    socket.once('connect', () =>
      target.roomIds.length > 1 ? socket.emit('join', String(index % target.roomIds.length), subscribed) : subscribed(),
    );
    socket.once('connect_error', (err) => reject(err));
    socket.on('disconnect', (reason) => {
      if (!closing) events.dropped(`socket.io disconnect: ${reason}`);
    });
  });
}

/** Sends messages into the target's rooms; `send` resolves when the server confirmed, throws otherwise. */
export interface Sender {
  /** Sends `body` into room `room` (an index into `Target.roomIds`). */
  send(body: string, room: number): Promise<void>;
  close(): void;
}

const SEND_TIMEOUT_MS = 15_000;
const SEND_MESSAGE = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { seq } }';

/** Ours: the `sendMessage` mutation over HTTP (keep-alive). Reference: a Socket.IO `send` with ack. */
export async function createSender(target: Target): Promise<Sender> {
  if (target.system === 'ours') {
    // node:http with keep-alive rather than fetch: the sender shares the cores with the server, and
    // fetch (undici) costs it ~0.46 ms of CPU per request against ~0.10 ms (BENCHMARKS.md, "50 senders").
    const agent = new http.Agent({ keepAlive: true });
    const authorization = `Bearer ${target.senderToken}`;
    return {
      async send(body, room) {
        const payload = JSON.stringify({ query: SEND_MESSAGE, variables: { input: { roomId: target.roomIds[room], body } } });
        const { status, text } = await post(target.httpUrl, payload, authorization, agent);
        const json = JSON.parse(text) as { data?: { sendMessage?: { seq: number } }; errors?: Array<{ message: string; extensions?: { code?: string } }> };
        if (json.errors?.length) throw new Error(`${json.errors[0].extensions?.code ?? 'ERROR'}: ${json.errors[0].message}`);
        if (!json.data?.sendMessage) throw new Error(`HTTP ${status} without data`);
      },
      close: () => agent.destroy(),
    };
  }
  const socket = io(target.httpUrl, { transports: ['websocket'], forceNew: true, reconnection: false });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  return {
    async send(body, room) {
      const args = target.roomIds.length > 1 ? [body, String(room)] : [body];
      await socket.timeout(SEND_TIMEOUT_MS).emitWithAck('send', ...args);
    },
    close: () => socket.disconnect(),
  };
}

/** One POST on a kept-alive connection of `agent`; rejects on a network error or after SEND_TIMEOUT_MS. */
function post(url: string, payload: string, authorization: string, agent: http.Agent): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), authorization };
    const req = http.request(url, { method: 'POST', agent, headers, timeout: SEND_TIMEOUT_MS }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('send timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object' && 'code' in err) {
    const e = err as { code: number; reason?: string };
    return `closed ${e.code}${e.reason ? ` ${e.reason}` : ''}`;
  }
  return JSON.stringify(err);
}
