import Redis, { type Command } from 'ioredis';

/** How ioredis rejects a command that `commandTimeout` ended. */
const TIMED_OUT = 'Command timed out';

/**
 * An ioredis client that connects again when a command goes unanswered for its `commandTimeout`
 * while the connection is up: Redis stopped answering with its connections open (its process
 * stopped, a stalled host or VM). The new connection stays short of ready until Redis answers
 * again, so what the client's users do while it is not ready (fail at once: no offline queue; fall
 * back; report Redis down) applies meanwhile. Otherwise each command would wait for its own timeout
 * and stay queued in Redis, to run when it wakes: budgets spent twice, stale publishes. Emits
 * `unanswered` before it connects again.
 */
export class AnsweringRedis extends Redis {
  /** The connection given up on: the commands that time out together end it once. */
  private unanswered?: Redis['stream'];

  override sendCommand(command: Command, stream?: Parameters<Redis['sendCommand']>[1]): unknown {
    const sent = super.sendCommand(command, stream);
    command.promise.catch((err: Error) => {
      if (err.message !== TIMED_OUT || this.status !== 'ready' || this.unanswered === this.stream) return;
      this.unanswered = this.stream;
      this.emit('unanswered');
      this.disconnect(true);
    });
    return sent;
  }
}
