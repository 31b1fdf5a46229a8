/**
 * A stream that can hand its events to a sink instead of being iterated. A subscription's source
 * offers it so that live events go from the room hub's fan-out to the socket without an async
 * iterator, a promise or a queue per subscriber (`src/graphql/shared-subscribe.ts`); the same
 * source is still an ordinary async iterable for everything else.
 */
export interface PushStream<T> {
  /** Starts the stream into `sink` (once; instead of iterating it). Returns what stops it. */
  startPush(sink: PushSink<T>): () => void;
}

export interface PushSink<T> {
  /**
   * An event the stream produced on its own time (a replay from the database, a buffered event):
   * the stream waits for the returned promise before its next event.
   */
  replay(event: T): Promise<void>;
  /**
   * A live event, handed over synchronously while `channel` (the room hub) fans it out to every
   * subscriber at once; sinks of identical subscriptions on one channel share its execution and
   * serialisation. Never awaited: a promise back means "no more live events until it settles"
   * (the stream buffers meanwhile, then continues with `replay`).
   */
  live(event: T, channel: object): Promise<void> | undefined;
  /** The stream ended: cleanly, or with `error`. Nothing is handed over after it. */
  end(error?: unknown): void;
}

export function isPushStream<T>(value: unknown): value is PushStream<T> {
  return typeof (value as PushStream<T>)?.startPush === 'function';
}

/**
 * Where a replayed event's executions that do not depend on the viewer may be shared beyond the
 * event object itself (`src/chat/replay-windows.ts` sets it): feeds served a message by different
 * reads or checks of one window get different event objects, which name one object here, so the
 * subscriptions of one selection still execute the message once. An execution that reads the
 * viewer is shared by the event object alone: what a viewer's own state shows is never older than
 * its subscription's read (`src/graphql/shared-subscribe.ts`).
 */
export const SHARED_AS = Symbol('shared as');

/** The object `event`'s viewer-independent executions are shared under: its `SHARED_AS`, or itself. */
export function sharedAs(event: object): object {
  return (event as { [SHARED_AS]?: object })[SHARED_AS] ?? event;
}
