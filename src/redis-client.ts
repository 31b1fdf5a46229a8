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
 * wakes: budgets spent twice, stale publishes. Emits `unanswered` as it gives up.
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

  /** One handler for every command's failure (none is made per command). */
  private readonly failed = (err: Error) => {
    if (err.message === TIMED_OUT) this.giveUp();
  };
}
