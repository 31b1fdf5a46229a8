/**
 * What one idle subscribed connection costs the chat API's server process: starts it as the bench
 * does (`systems.ts`), opens `MEM_CONNECTIONS` (default 5,000) graphql-ws connections with one
 * `messageAdded` subscription each (from 4 forked load processes, as the bench does), warms them
 * up until every one has received a message, and prints the server's RSS before and after (and the
 * V8 heap and external memory from its `/metrics`) per connection, as the bench reads it and again
 * after a full garbage collection (through the server's inspector, on a free loopback port). With `MEM_SNAPSHOT=<dir>` it
 * also writes a heap snapshot of the server before connecting and after warm-up into `<dir>`
 * (`--heapsnapshot-signal`), for `bench/heap-summary.ts`. `MEM_SYSTEM=socketio` measures the bench's
 * reference instead (RSS; the V8 figures need ours' `/metrics`); RSS is read before each (writing a snapshot
 * takes memory the process keeps). `BENCH_NODE_ARGS` adds node flags as in the bench.
 *
 *   node --import tsx bench/memory.ts
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { cleanupAll, cleanupOnSignals } from './cleanup';
import { rssMb, settledRssMb, sleep, startBackingServices } from './infra';
import type { FromLoad, FromSender, Target, ToLoad, ToSender } from './protocol';
import { startOurs, startReference } from './systems';
import WebSocket from 'ws';
import { Worker } from './worker';

const connections = Number(process.env.MEM_CONNECTIONS ?? 5000);
const snapshotDir = process.env.MEM_SNAPSHOT ? path.resolve(process.env.MEM_SNAPSHOT) : undefined;
/** `MEM_SUBSCRIBE=0`: connections that only authenticate (`connection_init`), no subscription. */
const subscribe = process.env.MEM_SUBSCRIBE !== '0';
const PROCESSES = 4;
/** `MEM_SYSTEM=socketio`: the bench's reference instead of ours (RSS only). */
const system = process.env.MEM_SYSTEM === 'socketio' ? 'socketio' : 'ours';

/** Opens `count` graphql-ws connections from this process that authenticate and hold nothing else. */
async function openIdle(target: Target, count: number): Promise<WebSocket[]> {
  const sockets: WebSocket[] = [];
  let next = 0;
  const open = (index: number) =>
    new Promise<WebSocket>((resolve, reject) => {
      const ws = new WebSocket(target.wsUrl, 'graphql-transport-ws');
      ws.once('open', () => ws.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${target.subscriberTokens[index % target.subscriberTokens.length]}` } })));
      ws.once('message', (data) => (JSON.parse(String(data)).type === 'connection_ack' ? resolve(ws) : reject(new Error(String(data)))));
      ws.once('error', reject);
    });
  await Promise.all(Array.from({ length: 25 }, async () => {
    while (next < count) sockets.push(await open(next++));
  }));
  return sockets;
}

/** The server's own view of its memory, from the Prometheus process metrics (MB). */
async function serverMemory(httpUrl: string): Promise<{ rss: number; heapTotal: number; heapUsed: number; external: number }> {
  // The reference has no /metrics: its figures are NaN.
  const text = system === 'ours' ? await (await fetch(httpUrl.replace(/\/graphql$/, '/metrics'))).text() : '';
  const read = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, 'm').exec(text)?.[1] ?? NaN) / 1024 / 1024;
  return {
    rss: read('process_resident_memory_bytes'),
    heapTotal: read('nodejs_heap_size_total_bytes'),
    heapUsed: read('nodejs_heap_size_used_bytes'),
    external: read('nodejs_external_memory_bytes'),
  };
}

/** A full garbage collection in the server, through its inspector (`HeapProfiler.collectGarbage`, twice). */
async function collectGarbage(inspectorUrl: string): Promise<void> {
  const ws = new WebSocket(inspectorUrl);
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  for (const id of [1, 2]) {
    ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
    await new Promise<void>((resolve) => ws.on('message', (data) => JSON.parse(String(data)).id === id && resolve()));
  }
  ws.close();
  await sleep(500);
}

/** Signals the server to write a heap snapshot into `snapshotDir` and waits until it is written. */
async function snapshot(pid: number, label: string): Promise<void> {
  if (!snapshotDir) return;
  const before = new Set(readdirSync(snapshotDir));
  process.kill(pid, 'SIGUSR2');
  for (;;) {
    await sleep(1000);
    const file = readdirSync(snapshotDir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (!file) continue;
    const size = statSync(path.join(snapshotDir, file)).size;
    await sleep(2000);
    if (size > 0 && statSync(path.join(snapshotDir, file)).size === size) {
      console.error(`[memory] ${label}: ${path.join(snapshotDir, file)} (${(size / 1e6).toFixed(0)} MB)`);
      return;
    }
  }
}

async function main(): Promise<void> {
  cleanupOnSignals();
  // The inspector on a free port, to collect garbage before reading what is live.
  process.env.BENCH_NODE_ARGS = `${process.env.BENCH_NODE_ARGS ?? ''} --inspect=127.0.0.1:0`;
  if (snapshotDir) {
    mkdirSync(snapshotDir, { recursive: true });
    process.env.BENCH_NODE_ARGS = `${process.env.BENCH_NODE_ARGS ?? ''} --heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${snapshotDir}`;
  }
  const backing = await startBackingServices();
  const running = system === 'ours' ? await startOurs(backing, { rooms: 1, connections }) : await startReference({ rooms: 1, connections });
  const { pid } = running.server;
  const sender = new Worker<ToSender, FromSender>('sender', 'sender.ts');
  const loads = Array.from({ length: PROCESSES }, (_, n) => new Worker<ToLoad, FromLoad>(`load ${n + 1}`, 'load.ts'));
  try {
    sender.send({ type: 'init', target: running.target });
    await sender.expect('ready', 30_000);
    const before = { rssMb: await settledRssMb(pid), ...(await serverMemory(running.target.httpUrl)) };
    const inspector = running.server.problems.map((line) => /Debugger listening on (ws:\S+)/.exec(line)?.[1]).find(Boolean)!;
    await collectGarbage(inspector);
    const beforeGc = { rssMb: rssMb(pid), ...(await serverMemory(running.target.httpUrl)) };
    await snapshot(pid, 'before');

    if (subscribe) {
      let offset = 0;
      for (const [n, worker] of loads.entries()) {
        const count = Math.floor(connections / PROCESSES) + (n < connections % PROCESSES ? 1 : 0);
        worker.send({ type: 'connect', target: running.target, count, offset });
        offset += count;
      }
      await Promise.all(loads.map((w) => w.expect('connected', 300_000)));
      sender.send({ type: 'warmup', rooms: 1 });
      await Promise.all(loads.map((w) => w.expect('warm', 300_000)));
      sender.send({ type: 'stopWarmup' });
      await sender.expect('warmupStopped', 30_000);
    } else {
      await openIdle(running.target, connections);
    }
    await sleep(1000);
    const after = { rssMb: rssMb(pid), ...(await serverMemory(running.target.httpUrl)) };
    await collectGarbage(inspector);
    const afterGc = { rssMb: rssMb(pid), ...(await serverMemory(running.target.httpUrl)) };
    await snapshot(pid, 'after');

    const perConnectionKb = (a: number, b: number) => Math.round(((a - b) * 1024 * 10) / connections) / 10;
    console.log(
      JSON.stringify({
        system,
        connections,
        subscribed: subscribe,
        rssKbPerConnection: perConnectionKb(after.rssMb, before.rssMb),
        heapUsedKbPerConnection: perConnectionKb(after.heapUsed, before.heapUsed),
        heapTotalKbPerConnection: perConnectionKb(after.heapTotal, before.heapTotal),
        externalKbPerConnection: perConnectionKb(after.external, before.external),
        // Both readings again after a full garbage collection (through the inspector): what is live.
        rssKbPerConnectionAfterGc: perConnectionKb(afterGc.rssMb, beforeGc.rssMb),
        heapUsedKbPerConnectionAfterGc: perConnectionKb(afterGc.heapUsed, beforeGc.heapUsed),
        before,
        after,
        beforeGc,
        afterGc,
      }),
    );
  } finally {
    await cleanupAll();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    void cleanupAll().finally(() => process.exit(1));
  },
);
