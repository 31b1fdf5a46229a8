import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { SocketGuard } from '../../src/http/socket-guard';
import { waitFor } from '../support/harness';

const INTERVAL_MS = 300;
/** Bounds that cut nobody here: only the keep-alive acts (the sweep then runs every 50 ms). */
const LIMITS = { perAddress: 1000, perUser: 1000, operationsPerSocketPerSecond: 1000, maxBufferedBytes: 1 << 20, stallTimeoutMs: 200 };

let server: Server;
let wss: WebSocketServer;
let guard: SocketGuard;
const clients: WebSocket[] = [];

beforeEach(async () => {
  server = createServer();
  wss = new WebSocketServer({ server });
  guard = new SocketGuard(wss, LIMITS, '*', () => '127.0.0.1', INTERVAL_MS);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
});

afterEach(async () => {
  guard.close();
  for (const client of clients.splice(0)) client.terminate();
  wss.close();
  server.close();
});

/** A real ws client: `autoPong: false` is a peer that never answers a ping (a dead one, as seen from here). */
async function connect(autoPong = true) {
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`, { autoPong });
  clients.push(client);
  const pings: number[] = [];
  let closed: { code: number; at: number } | undefined;
  client.on('ping', () => pings.push(performance.now()));
  client.on('close', (code) => (closed = { code, at: performance.now() }));
  await once(client, 'open');
  return { client, pings, closed: () => closed };
}

describe("WebSocket keep-alive on the guard's one sweep", () => {
  it('pings every socket every interval, and keeps those that answer open', async () => {
    const peers = await Promise.all([connect(), connect(), connect()]);
    await waitFor(() => peers.every((p) => p.pings.length >= 3), 5000);
    for (const peer of peers) {
      expect(peer.closed()).toBeUndefined();
      expect(peer.client.readyState).toBe(WebSocket.OPEN);
      // An interval apart, not a tick: read where they arrive, so with half an interval's leeway for the delays on the way.
      for (let i = 1; i < peer.pings.length; i++) expect(peer.pings[i] - peer.pings[i - 1]).toBeGreaterThanOrEqual(INTERVAL_MS / 2);
    }
  });

  it('cuts a socket that has not answered its ping by the next one, and no sooner', async () => {
    const alive = await connect();
    const dead = await connect(false);
    await waitFor(() => dead.closed() !== undefined, 5000);
    expect(dead.closed()!.code).toBe(1006); // terminated: no close frame
    expect(dead.pings).toHaveLength(1);
    expect(dead.closed()!.at - dead.pings[0]).toBeGreaterThanOrEqual(INTERVAL_MS / 2); // an interval after it (as read here), not the next tick
    expect(alive.closed()).toBeUndefined();
    expect(wss.clients.size).toBe(1);
  });

  it('keeps a socket whose pong comes late, within the interval', async () => {
    const slow = await connect(false);
    slow.client.on('ping', () => setTimeout(() => slow.client.pong(), INTERVAL_MS / 3));
    await waitFor(() => slow.pings.length >= 3, 5000);
    expect(slow.closed()).toBeUndefined();
  });

  it('pings nothing once closed', async () => {
    const peer = await connect(false);
    await waitFor(() => peer.pings.length === 1, 5000);
    guard.close();
    await new Promise((resolve) => setTimeout(resolve, 3 * INTERVAL_MS));
    expect(peer.pings).toHaveLength(1);
    expect(peer.closed()).toBeUndefined(); // nor cuts any
  });
});
