import Redis, { type Command } from 'ioredis';

/** How ioredis rejects a command that `commandTimeout` ended. */
const TIMED_OUT = 'Command timed out';

/**
 * An ioredis client that gives its connection up when a command goes unanswered for its
 * `commandTimeout` while the connection is up: Redis stopped answering with its connections open
 * (its process stopped, a stalled host or VM). The connection is cut at once (not ended: a stopped
 * Redis never answers the end, and the client would count as ready until the socket timed out), and
 * the next one stays short of ready until Redis answers again, so what the client's users do while
 * it is not ready (fail at once: no offline queue; fall back; report Redis down) applies meanwhile.
 * Otherwise each command would wait for its own timeout and stay queued in Redis, to run when it
 * wakes: budgets spent twice, stale publishes. Emits `unanswered` as it gives up. A command that
 * timed out only because this process was held (its answer waiting unread) does not count.
 */
export class AnsweringRedis extends Redis {
  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    const sent = super.sendCommand(command, stream);
    command.promise.catch(this.failed);
    return sent;
  }

  /** Whether the connection is ready and not being given up. */
  get answering(): boolean {
    return this.status === 'ready' && !this.stream.destroyed;
  }

  /** Cuts the connection (ioredis connects again); once, however many commands time out together. */
  giveUp(): void {
    if (!this.answering) return;
    this.emit('unanswered');
    this.stream.destroy();
  }

  /** A check after a timeout is waiting for the turn of the event loop that reads what Redis sent. */
  private checking = false;

  /**
   * One handler for every command's failure (none is made per command). A timeout is not taken at
   * its word: when this process's own event loop was held past it (a long synchronous task, the
   * process descheduled), the timer runs before the loop reads the answer that waits in the socket.
   * So the connection is given up only if nothing more was read from it once the loop has read its
   * sockets (`setImmediate` runs after that phase): Redis sent nothing.
   */
  private readonly failed = (err: Error) => {
    if (err.message !== TIMED_OUT || this.checking) return;
    this.checking = true;
    const { stream } = this;
    const read = stream.bytesRead;
    setImmediate(() => {
      this.checking = false;
      if (stream === this.stream && stream.bytesRead === read) this.giveUp();
    });
  };
}
