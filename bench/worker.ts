import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { track } from './cleanup';

type Msg = { type: string };
type Waiter = { type: string; resolve: (m: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };

/**
 * A forked bench script (`bench/<script>.ts`, run through tsx) with typed IPC: `send` a message,
 * `expect` the next message of a type, or `on` a type to stream it. A message `{ type: 'error' }`
 * or the child's exit rejects everything still expected.
 */
export class Worker<In extends Msg, Out extends Msg> {
  readonly child: ChildProcess;
  readonly stop: () => Promise<void>;
  private readonly inbox: Out[] = [];
  private readonly waiters: Waiter[] = [];
  private readonly listeners = new Map<string, (m: Out) => void>();
  private failure?: Error;

  constructor(readonly name: string, script: string) {
    this.child = fork(path.join(__dirname, script), [], {
      execArgv: ['--import', 'tsx'],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.stop = track(name, this.child);
    this.child.on('message', (m: Out) => this.receive(m));
    this.child.on('exit', (code, signal) => this.fail(new Error(`${name} exited (${signal ?? code})`)));
  }

  send(message: In): void {
    if (this.child.connected) this.child.send(message);
  }

  /** The next message of `type` (queued if it came already); rejects after `timeoutMs`. */
  expect<T extends Out['type']>(type: T, timeoutMs: number): Promise<Extract<Out, { type: T }>> {
    const at = this.inbox.findIndex((m) => m.type === type);
    if (at >= 0) return Promise.resolve(this.inbox.splice(at, 1)[0] as Extract<Out, { type: T }>);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        type,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          reject(new Error(`${this.name}: no '${type}' within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** Streams every message of `type` to `listener` instead of queuing it. */
  on<T extends Out['type']>(type: T, listener: (m: Extract<Out, { type: T }>) => void): void {
    this.listeners.set(type, listener as (m: Out) => void);
  }

  private receive(message: Out): void {
    if (message.type === 'error') return this.fail(new Error(`${this.name}: ${(message as Msg & { message?: string }).message}`));
    const listener = this.listeners.get(message.type);
    if (listener) return listener(message);
    const at = this.waiters.findIndex((w) => w.type === message.type);
    if (at < 0) return void this.inbox.push(message);
    const [waiter] = this.waiters.splice(at, 1);
    clearTimeout(waiter.timer);
    waiter.resolve(message);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(this.failure);
    }
  }
}

/**
 * For the child side: the typed `send` to the parent, and exit when the parent goes away
 * (so a killed benchmark leaves no load process behind).
 */
export function parentChannel<Out extends Msg>(): (message: Out) => void {
  process.on('disconnect', () => process.exit(0));
  return (message) => {
    if (process.connected) process.send!(message);
  };
}
