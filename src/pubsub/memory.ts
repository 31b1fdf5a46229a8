import { EventEmitter } from 'node:events';
import type { PubSub, RoomSignal } from './types';

/** In-process pub/sub for a single instance (the embedded default). */
export class MemoryPubSub implements PubSub {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish(topic: string, signal: RoomSignal): Promise<void> {
    this.emitter.emit(topic, signal);
  }

  async subscribe(topic: string, handler: (signal: RoomSignal) => void) {
    this.emitter.on(topic, handler);
    return async () => {
      this.emitter.off(topic, handler);
    };
  }

  onReconnect(): () => void {
    return () => undefined; // never disconnects
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}
