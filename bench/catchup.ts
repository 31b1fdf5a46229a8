import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { cpuSeconds } from './infra';
import { now } from './protocol';
import { percentile } from './report';
import { gql, type RunningSystem } from './systems';

const SENDERS = 50;
const TIMEOUT_MS = 180_000;

/** What subscribers far behind saw while catching up. */
export interface CatchUpLine {
  scenario: string;
  system: 'ours';
  behind: number;
  /** Subscribers resuming at once, each `behind` changes behind. */
  readers: number;
  /** Subscribe sent → the last missed message received: the slowest reader. */
  ms: number;
  /** The fastest reader and the median one. */
  minMs: number;
  medianMs: number;
  /** Missed messages delivered per second, all readers together, until the slowest was done. */
  messagesPerSec: number;
  received: number;
  outOfOrder: number;
  serverCpuMs: number;
  /** How long writing the backlog took (50 senders), for scale. */
  backlogSendsPerSec: number;
}

/** The message a backlog starts after, and how fast it was written. */
export interface Backlog {
  behind: number;
  anchor: { seq: number; cursor: string };
  sendsPerSec: number;
}

/** Sends an anchor message to the system's room, then `behind` more (50 in flight). */
export async function writeBacklog(system: RunningSystem, behind: number): Promise<Backlog> {
  const { target } = system;
  const send = (body: string) =>
    gql(target.httpUrl, 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { seq cursor } }', { input: { roomId: target.roomId, body } }, target.senderToken);
  const anchor = (await send('anchor')).sendMessage as { seq: number; cursor: string };
  let next = 0;
  const started = now();
  await Promise.all(
    Array.from({ length: SENDERS }, async () => {
      while (next < behind) {
        next++;
        await send(`backlog ${next}`);
      }
    }),
  );
  return { behind, anchor, sendsPerSec: Math.round(behind / ((now() - started) / 1000)) };
}

/**
 * `readers` graphql-ws subscribers (each its own connection) resume `messageAdded` after the
 * backlog's anchor at the same moment; measures until each holds all of the backlog's messages,
 * in order. Messages sent after the backlog (live load meanwhile) are not counted.
 */
export async function catchUp(system: RunningSystem, backlog: Backlog, readers = 1, scenario = `catchup-${backlog.behind}`): Promise<CatchUpLine> {
  const { target, server } = system;
  const { anchor, behind } = backlog;
  const clients = Array.from({ length: readers }, (_, i) =>
    createClient({
      url: target.wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${target.subscriberTokens[i % target.subscriberTokens.length]}` },
      retryAttempts: 0,
    }),
  );
  const cpuStart = cpuSeconds(server.pid);
  const t0 = now();
  let received = 0;
  let outOfOrder = 0;
  const resume = (client: (typeof clients)[number]) =>
    new Promise<number>((resolve, reject) => {
      let last = anchor.seq;
      let mine = 0;
      const timer = setTimeout(() => reject(new Error(`a reader caught up ${mine} of ${behind} in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      client.subscribe<{ messageAdded: { seq: number } }>(
        { query: 'subscription($roomId: ID!, $after: String) { messageAdded(roomId: $roomId, after: $after) { id seq body createdAt } }', variables: { roomId: target.roomId, after: anchor.cursor } },
        {
          next: (result) => {
            const seq = result.data?.messageAdded.seq ?? 0;
            if (mine === behind) return; // live messages after the backlog
            if (seq !== last + 1) outOfOrder++;
            last = seq;
            received++;
            if (++mine === behind) {
              clearTimeout(timer);
              resolve(now() - t0);
            }
          },
          error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
          complete: () => undefined,
        },
      );
    });
  try {
    const times = Float64Array.from(await Promise.all(clients.map(resume))).sort();
    const ms = times[times.length - 1];
    return {
      scenario,
      system: 'ours',
      behind,
      readers,
      ms: Math.round(ms),
      minMs: Math.round(times[0]),
      medianMs: Math.round(percentile(times, 0.5)),
      messagesPerSec: Math.round((behind * readers) / (ms / 1000)),
      received,
      outOfOrder,
      serverCpuMs: Math.round(1000 * (cpuSeconds(server.pid) - cpuStart)),
      backlogSendsPerSec: backlog.sendsPerSec,
    };
  } finally {
    await Promise.all(clients.map((client) => client.dispose()));
  }
}
