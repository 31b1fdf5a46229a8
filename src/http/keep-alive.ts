import type { WebSocket, WebSocketServer } from 'ws';

/** How often the keep-alive looks for sockets due a ping: the jitter of each socket's ping interval. */
const TICK_MS = 1000;

/**
 * WebSocket keep-alive for every socket of a server on one timer, the heartbeat `ws` documents
 * ("How to detect and close broken connections"), in place of graphql-ws's, which gives each
 * socket an interval of its own, and for each ping a timeout and a pong listener. Each socket is
 * pinged every `intervalMs` (and up to a tick more), as graphql-ws pings; one that has not
 * answered its previous ping by then is terminated (a dead peer, a cut network), as graphql-ws
 * terminates one unanswered for `intervalMs`.
 *
 * Why: a per-socket timer wakes the process on its own, at 1,000 sockets and 12 s some 80 times a
 * second, and an idle wake-up costs tens of microseconds of CPU on the machines the bench runs on;
 * here the pings of the sockets that fall due in the same second go out in one wake-up.
 * (BENCHMARKS.md, "Fewer wake-ups".)
 */
export class KeepAlive {
  /** When each socket is next due a ping (`performance.now()`). */
  private readonly due = new WeakMap<WebSocket, number>();
  /** Sockets pinged and not heard from since. */
  private readonly waiting = new WeakSet<WebSocket>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly server: WebSocketServer,
    private readonly intervalMs: number,
    tickMs = Math.min(TICK_MS, intervalMs),
  ) {
    const waiting = this.waiting;
    // One listener for every socket's pongs, not a closure each.
    const answered = function (this: WebSocket) {
      waiting.delete(this);
    };
    server.on('connection', (socket: WebSocket) => {
      this.due.set(socket, performance.now() + intervalMs);
      socket.on('pong', answered);
    });
    this.timer = setInterval(() => this.tick(), tickMs);
    this.timer.unref();
  }

  private tick(): void {
    const now = performance.now();
    for (const socket of this.server.clients) {
      if (socket.readyState !== socket.OPEN || (this.due.get(socket) ?? 0) > now) continue;
      if (this.waiting.has(socket)) {
        socket.terminate();
        continue;
      }
      this.waiting.add(socket);
      this.due.set(socket, now + this.intervalMs);
      socket.ping();
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}
