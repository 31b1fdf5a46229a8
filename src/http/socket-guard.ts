import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { WebSocket, WebSocketServer } from 'ws';
import type { ClientAddress } from './client-address';
import { CloseCode, type WebSocketLimits } from './transport';

type VerifyCallback = (ok: boolean, status?: number, message?: string) => void;

/** Counts of open sockets by key (a user, an address) on this instance. */
class Counts {
  private readonly counts = new Map<string, number>();

  /** Takes a place for `key` when fewer than `max` are taken; false when full. */
  take(key: string, max: number): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= max) return false;
    this.counts.set(key, n + 1);
    return true;
  }

  give(key: string): void {
    const n = (this.counts.get(key) ?? 1) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }
}

/**
 * The WebSocket transport's bounds outside GraphQL: which browser origins may open a socket
 * (`CORS_ORIGINS`; no Origin, as from servers and bots, is allowed), how many sockets one
 * address and one user may hold on this instance, and readers too slow for what they are sent
 * (more than `maxBufferedBytes` waiting, or nothing taken for `stallTimeoutMs`), which are cut off
 * so that nothing piles up for them.
 */
export class SocketGuard {
  private readonly byAddress = new Counts();
  private readonly byUser = new Counts();
  private readonly origins: Set<string> | '*';
  private readonly sweep: NodeJS.Timeout;
  /** Each socket's TCP connection, to see whether the client takes what is written to it. */
  private readonly connections = new WeakMap<WebSocket, Socket>();

  constructor(
    wsServer: WebSocketServer,
    private readonly limits: WebSocketLimits,
    corsOrigins: '*' | string[],
    private readonly clientAddress: ClientAddress,
  ) {
    this.origins = corsOrigins === '*' ? '*' : new Set(corsOrigins.map(originOf));
    wsServer.on('connection', (socket, req) => this.connections.set(socket, req.socket));
    const progress = new WeakMap<WebSocket, { flushed: number; since: number }>();
    this.sweep = setInterval(() => {
      for (const socket of wsServer.clients) this.checkReader(socket, progress);
    }, Math.min(1000, Math.max(50, limits.stallTimeoutMs / 4)));
    this.sweep.unref();
  }

  /** `verifyClient` of the WebSocket server: Origin, then the address's socket count (429 when full). */
  verify = (info: { origin?: string; req: IncomingMessage }, done: VerifyCallback): void => {
    if (info.origin && this.origins !== '*' && !this.origins.has(originOf(info.origin))) {
      done(false, 403, 'Origin not allowed');
      return;
    }
    const address = this.clientAddress(info.req);
    if (!this.byAddress.take(address, this.limits.perAddress)) {
      done(false, 429, 'Too many WebSockets from this address');
      return;
    }
    // The place is given back when the TCP connection closes (once), also when the handshake fails.
    info.req.socket.on('close', () => this.byAddress.give(address));
    done(true);
  };

  /**
   * Counts an authenticated socket against its user; when the user already holds `perUser`
   * sockets here, closes it with 4429 and answers false.
   */
  admitUser(socket: WebSocket, userId: string): boolean {
    if (!this.byUser.take(userId, this.limits.perUser)) {
      socket.close(CloseCode.TooManyConnections, 'Too many WebSockets for this user');
      return false;
    }
    socket.on('close', () => this.byUser.give(userId)); // a WebSocket closes once
    return true;
  }

  close(): void {
    clearInterval(this.sweep);
  }

  private checkReader(socket: WebSocket, progress: WeakMap<WebSocket, { flushed: number; since: number }>): void {
    const waiting = socket.bufferedAmount;
    if (waiting > this.limits.maxBufferedBytes) {
      socket.terminate();
      return;
    }
    // Bytes the kernel took: they move on while the client reads, and stand still while it does not.
    const connection = this.connections.get(socket);
    const flushed = connection ? connection.bytesWritten - connection.writableLength : 0;
    const seen = progress.get(socket);
    const now = Date.now();
    if (!seen) {
      progress.set(socket, { flushed, since: now });
    } else if (waiting === 0 || seen.flushed !== flushed) {
      seen.flushed = flushed; // in place: a sweep of thousands of sockets makes no garbage
      seen.since = now;
    } else if (now - seen.since > this.limits.stallTimeoutMs) {
      socket.terminate();
    }
  }
}

/** `https://App.example.com/` and `https://app.example.com` are one origin. */
function originOf(value: string): string {
  try {
    return new URL(value).origin;
  } catch {
    return value.trim().toLowerCase();
  }
}
