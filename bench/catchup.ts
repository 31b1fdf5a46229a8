import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { cpuSeconds } from './infra';
import { now } from './protocol';
import { gql, type RunningSystem } from './systems';

const SENDERS = 50;
const TIMEOUT_MS = 120_000;

/** What a subscriber far behind saw while catching up. */
export interface CatchUpLine {
  scenario: string;
  system: 'ours';
  behind: number;
  /** Subscribe sent → the last missed message received. */
  ms: number;
  messagesPerSec: number;
  received: number;
  outOfOrder: number;
  serverCpuMs: number;
  /** How long writing the backlog took (50 senders), for scale. */
  backlogSendsPerSec: number;
}

/**
 * A subscriber `behind` changes behind: a message is sent as the anchor, then `behind` more
 * (50 in flight), then one graphql-ws subscriber resumes `messageAdded` after the anchor's cursor
 * and the time until it holds all of them is measured. Ours only: the reference keeps nothing to
 * replay.
 */
export async function catchUp(system: RunningSystem, behind: number): Promise<CatchUpLine> {
  const { target, server } = system;
  const roomId = target.roomId;
  const send = (body: string) =>
    gql(target.httpUrl, 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { seq cursor } }', { input: { roomId, body } }, target.senderToken);
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
  const backlogSendsPerSec = Math.round(behind / ((now() - started) / 1000));

  const client = createClient({
    url: target.wsUrl,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${target.subscriberTokens[0]}` },
    retryAttempts: 0,
  });
  const cpuStart = cpuSeconds(server.pid);
  const t0 = now();
  let received = 0;
  let outOfOrder = 0;
  let last = anchor.seq;
  try {
    const ms = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`caught up ${received} of ${behind} in ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      client.subscribe<{ messageAdded: { seq: number } }>(
        { query: 'subscription($roomId: ID!, $after: String) { messageAdded(roomId: $roomId, after: $after) { id seq body createdAt } }', variables: { roomId, after: anchor.cursor } },
        {
          next: (result) => {
            const seq = result.data?.messageAdded.seq ?? 0;
            if (seq !== last + 1) outOfOrder++;
            last = seq;
            if (++received === behind) {
              clearTimeout(timer);
              resolve(now() - t0);
            }
          },
          error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
          complete: () => undefined,
        },
      );
    });
    return {
      scenario: `catchup-${behind}`,
      system: 'ours',
      behind,
      ms: Math.round(ms),
      messagesPerSec: Math.round(behind / (ms / 1000)),
      received,
      outOfOrder,
      serverCpuMs: Math.round(1000 * (cpuSeconds(server.pid) - cpuStart)),
      backlogSendsPerSec,
    };
  } finally {
    await client.dispose();
  }
}
