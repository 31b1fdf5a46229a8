import { EventEmitter } from 'node:events';
import type { PubSub, Topic } from './types';

/** In-process pub/sub for a single instance (the embedded default). */
export class MemoryPubSub implements PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish<T>(topic: Topic<T>, payload: T): Promise<void> {
    this.emitter.emit(topic.name, payload);
  }

  async subscribe<T>(topic: Topic<T>, handler: (payload: T) => void) {
    this.emitter.on(topic.name, handler);
    return async () => {
      this.emitter.off(topic.name, handler);
    };
  }

  readonly connected = true; // never disconnects

  onReconnect(): () => void {
    return () => undefined; // never disconnects
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async ready(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
