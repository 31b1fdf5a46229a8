/**
 * What the benchmark's processes say to each other over IPC (`fork` with `serialization: 'advanced'`,
 * so typed arrays cross as they are), and the message body format every system carries.
 */

/** `ours` is the chat API (graphql-ws, PostgreSQL, Redis); `socketio` the textbook reference. */
export type SystemName = 'ours' | 'socketio';

/** Everything a load or sender process needs to reach one running system. Plain data. */
export interface Target {
  system: SystemName;
  /** `http://127.0.0.1:<port>/graphql` for ours, `http://127.0.0.1:<port>` for Socket.IO. */
  httpUrl: string;
  /** `ws://127.0.0.1:<port>/graphql` for ours; unused by Socket.IO. */
  wsUrl: string;
  roomId: string;
  /** Every room of the scenario (the first is `roomId`): subscriber `j` listens to room `j % rooms`, message `i` goes to room `i % rooms`. */
  roomIds: string[];
  /** Bearer token of the sending user (ours only). */
  senderToken: string;
  /** Bearer tokens shared round-robin by the subscriber connections (ours only). */
  subscriberTokens: string[];
}

/** Parent → load process. */
export type ToLoad =
  | { type: 'connect'; target: Target; count: number; /** Global index of this process's first subscriber. */ offset: number }
  /** Starts counting rung `rung` from zero (deliveries of other rungs are ignored from now on). */
  | { type: 'rung'; rung: number }
  /** Reports what the current rung saw (`result`); the connections stay open. */
  | { type: 'collect' }
  | { type: 'finish' };

/** Load process → parent. */
export type FromLoad =
  | { type: 'connected'; connected: number }
  | { type: 'warm' }
  | { type: 'progress'; rung: number; delivered: number }
  | { type: 'result'; result: LoadResult }
  | { type: 'error'; message: string };

/** What one load process saw, for its share of the subscribers. */
export interface LoadResult {
  connections: number;
  /** `perIndex[i]`: how many of this process's subscribers received measured message `i` (once each). */
  perIndex: Uint32Array;
  /** Send → receipt in ms, one per delivery of a measured message. */
  latencies: Float64Array;
  /** Events whose seq was not greater than the previous one the same subscriber got. */
  outOfOrder: number;
  /** Subscriptions that ended or errored before the end of the run. */
  dropped: number;
  /** Subscription results that carried GraphQL errors. */
  errorResults: number;
  /** A few distinct error messages, for the report. */
  errors: string[];
  /** Wall-clock ms of the last measured delivery (0 if none). */
  lastReceipt: number;
}

/** Parent → sender process. */
export type ToSender =
  | { type: 'init'; target: Target }
  | { type: 'stopWarmup' }
  | { type: 'warmup'; rooms: number }
  | {
      type: 'run';
      /** The ladder's rung: carried in every body, so receivers count each rung apart. */
      rung: number;
      rate: number;
      durationMs: number;
      maxInFlight: number;
      /** Rooms the messages go to, round-robin (`Target.roomIds`). */
      rooms: number;
      /** Closed loop: `maxInFlight` senders as fast as confirmed, stopping after `durationMs` (`rate` ignored). */
      closedLoop?: boolean;
    };

/** Sender process → parent. */
export type FromSender =
  | { type: 'ready' }
  | { type: 'warmupStopped' }
  | { type: 'done'; result: SendResult }
  | { type: 'error'; message: string };

/** What the sender did in the measured phase. */
export interface SendResult {
  planned: number;
  attempted: number;
  /** Sends the server confirmed. */
  ok: number;
  /** Per measured index: 0 not attempted, 1 confirmed, 2 failed. */
  status: Uint8Array;
  /** Send round trip (request → confirmation) in ms, one per confirmed send. */
  latencies: Float64Array;
  errors: string[];
  firstSend: number;
  lastSend: number;
}

/** A message body: `k` is `m` (measured, index `i` of rung `r`) or `w` (warm-up); `t` the send time. */
export interface Body {
  k: 'm' | 'w';
  r?: number;
  i: number;
  t: number;
}

export const encodeBody = (body: Body): string => JSON.stringify(body);

/** The body, or undefined when it is not one of ours. */
export function decodeBody(text: string): Body | undefined {
  try {
    const body = JSON.parse(text) as Body;
    return typeof body.t === 'number' && typeof body.i === 'number' ? body : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Wall-clock milliseconds with sub-millisecond resolution, comparable across the processes of
 * one machine (all derive from the same system clock).
 */
export const now = (): number => performance.timeOrigin + performance.now();

/** Remembers up to `max` distinct messages (for error samples in the report). */
export function remember(list: string[], message: string, max = 5): void {
  if (list.length < max && !list.includes(message)) list.push(message);
}
