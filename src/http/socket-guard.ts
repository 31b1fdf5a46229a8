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
 * How often each WebSocket is pinged; one that has not answered the previous ping by then is cut,
 * so a half-open socket goes within 50 s. Socket.IO's interval (graphql-ws's own server pings every
 * 12 s): it keeps connections open behind proxies and load balancers that close idle ones after 60
 * s (nginx, AWS ALB), and every idle socket costs a ping and its pong half as often.
 */
export const KEEP_ALIVE_MS = 25_000;

/**
 * How long a socket may stay open without its `connection_init` (graphql-ws's default, checked on
 * the sweep: closed 4408 within a second after it).
 */
export const CONNECTION_INIT_WAIT_MS = 3000;
/** graphql-ws's close code for a socket whose `connection_init` did not come in time. */
const CLOSE_INIT_TIMEOUT = 4408;

/** What the guard's sweep knows of each socket. */
interface Watched {
  /** When it is closed unless its `connection_init` has come (`Date.now()`); 0 once it has. */
  initDue: number;
  /** Its TCP connection, to see whether the client takes what is written to it. */
  connection: Socket;
  /** The bytes the kernel had taken when the sweep last saw them move (or nothing waiting), and when (`Date.now()`; 0 before the first sweep). */
  flushed: number;
  since: number;
  /** When it is next due a ping (`Date.now()`). */
  pingDue: number;
  /** Pinged, and not answered since. */
  pinged: boolean;
  /** The user it counts for, once admitted (`admitUser`). */
  userId?: string;
}

/**
 * The WebSocket transport's bounds outside GraphQL: which browser origins may open a socket
 * (`CORS_ORIGINS`; no Origin, as from servers and bots, is allowed), how many sockets one
 * address and one user may hold on this instance, readers too slow for what they are sent
 * (more than `maxBufferedBytes` waiting, or nothing taken for `stallTimeoutMs`), and peers that
 * are gone (a ping every `keepAliveMs` unanswered by the next), which are cut off so that nothing
 * piles up for them.
 *
 * One sweep over the sockets does these checks, and closes a socket whose `connection_init` has not
 * come within CONNECTION_INIT_WAIT_MS, on one timer (graphql-ws's own wait is a timer per socket,
 * which its closure keeps for the socket's life): the keep-alive is ws's documented
 * heartbeat, in place of graphql-ws's, which gives each socket an interval of its own, and for
 * each ping a timeout and a pong listener. A per-socket timer wakes the process on its own (at
 * 1,000 sockets some 80 times a second); here the pings of the sockets that fall due in the same
 * sweep go out in one wake-up (BENCHMARKS.md, "Fewer wake-ups").
 */
export class SocketGuard {
  private readonly byAddress = new Counts();
  private readonly byUser = new Counts();
  private readonly origins: Set<string> | '*';
  private readonly sweep: NodeJS.Timeout;
  private readonly watched = new WeakMap<WebSocket, Watched>();
  /** The address each TCP connection that asked for a WebSocket counts for, until it closes. */
  private readonly addresses = new WeakMap<Socket, string>();
  /** Listeners every socket shares (`this` is the socket): no closure per socket. */
  private readonly givesAddress: (this: Socket) => void;
  private readonly givesUser: (this: WebSocket) => void;

  constructor(
    wsServer: WebSocketServer,
    private readonly limits: WebSocketLimits,
    corsOrigins: '*' | string[],
    private readonly clientAddress: ClientAddress,
    private readonly keepAliveMs = KEEP_ALIVE_MS,
  ) {
    this.origins = corsOrigins === '*' ? '*' : new Set(corsOrigins.map(originOf));
    const { watched, addresses, byAddress, byUser } = this;
    this.givesAddress = function () {
      const address = addresses.get(this);
      addresses.delete(this);
      if (address !== undefined) byAddress.give(address);
    };
    this.givesUser = function () {
      const seen = watched.get(this);
      if (seen?.userId === undefined) return;
      byUser.give(seen.userId);
      seen.userId = undefined;
    };
    // One listener for every socket's pongs, not a closure each.
    const answered = function (this: WebSocket) {
      const seen = watched.get(this);
      if (seen) seen.pinged = false;
    };
    wsServer.on('connection', (socket, req) => {
      const now = Date.now();
      watched.set(socket, { initDue: now + CONNECTION_INIT_WAIT_MS, connection: req.socket, flushed: 0, since: 0, pingDue: now + keepAliveMs, pinged: false });
      socket.on('pong', answered);
    });
    const sweep = () => {
      const now = Date.now();
      for (const socket of wsServer.clients) {
        const seen = watched.get(socket);
        if (seen && checkInitialised(socket, seen, now) && this.checkReader(socket, seen, now)) this.checkAlive(socket, seen, now);
      }
    };
    // After the event loop's turn of reading sockets (timers run before it): when the loop was held
    // up past a deadline (a long collection, a stalled host), what the clients sent meanwhile — a
    // `connection_init`, a pong — is read before the sweep judges them for not having sent it.
    this.sweep = setInterval(() => setImmediate(sweep), Math.min(1000, Math.max(50, limits.stallTimeoutMs / 4), keepAliveMs));
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
    this.addresses.set(info.req.socket, address);
    info.req.socket.on('close', this.givesAddress);
    done(true);
  };

  /** The socket's `connection_init` has come: no longer closed for its wait. */
  initialised(socket: WebSocket): void {
    const seen = this.watched.get(socket);
    if (seen) seen.initDue = 0;
  }

  /**
   * Counts an authenticated socket against its user; when the user already holds `perUser`
   * sockets here, closes it with 4429 and answers false.
   */
  admitUser(socket: WebSocket, userId: string): boolean {
    // The guard's connection listener is the server's first: it saw every socket graphql-ws serves.
    const seen = this.watched.get(socket);
    if (!seen) throw new Error('a WebSocket the guard did not see open');
    if (!this.byUser.take(userId, this.limits.perUser)) {
      socket.close(CloseCode.TooManyConnections, 'Too many WebSockets for this user');
      return false;
    }
    seen.userId = userId;
    socket.on('close', this.givesUser);
    return true;
  }

  close(): void {
    clearInterval(this.sweep);
  }

  /** Cuts a reader too slow for what it is sent; true while the socket stays. */
  private checkReader(socket: WebSocket, seen: Watched, now: number): boolean {
    const waiting = socket.bufferedAmount;
    if (waiting > this.limits.maxBufferedBytes) {
      socket.terminate();
      return false;
    }
    if (waiting === 0) {
      seen.since = now; // nothing waits to go out (most sockets, most of the time): not stalled
      return true;
    }
    // Bytes the kernel took: they move on while the client reads, and stand still while it does not.
    // (Read only while something waits: net's `bytesWritten` copies the socket's write queue.)
    const flushed = seen.connection.bytesWritten - seen.connection.writableLength;
    if (seen.since === 0 || seen.flushed !== flushed) {
      seen.flushed = flushed; // in place: a sweep of thousands of sockets makes no garbage
      seen.since = now;
    } else if (now - seen.since > this.limits.stallTimeoutMs) {
      socket.terminate();
      return false;
    }
    return true;
  }

  /** Pings a socket that is due, or cuts it when it has not answered the previous ping. */
  private checkAlive(socket: WebSocket, seen: Watched, now: number): void {
    if (socket.readyState !== socket.OPEN || seen.pingDue > now) return;
    if (seen.pinged) {
      socket.terminate();
      return;
    }
    seen.pinged = true;
    seen.pingDue = now + this.keepAliveMs;
    socket.ping();
  }
}

/** Closes a socket whose `connection_init` has not come in time; true while the socket stays. */
function checkInitialised(socket: WebSocket, seen: Watched, now: number): boolean {
  if (seen.initDue === 0 || seen.initDue > now) return true;
  seen.initDue = 0;
  if (socket.readyState === socket.OPEN) socket.close(CLOSE_INIT_TIMEOUT, 'Connection initialisation timeout');
  return false;
}

/** `https://App.example.com/` and `https://app.example.com` are one origin. */
function originOf(value: string): string {
  try {
    return new URL(value).origin;
  } catch {
    return value.trim().toLowerCase();
  }
}
