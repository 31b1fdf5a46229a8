import { mapAsyncIterator } from '@graphql-tools/utils';
import { createSourceEventStream, execute, Kind, print, visit, type ASTNode, type DocumentNode, type ExecutionArgs, type ExecutionResult, type FormattedExecutionResult } from 'graphql';
import type { GraphQLContext } from './context';

/**
 * Where a subscription's results go when it runs on a WebSocket: graphql-ws `next` frames written
 * straight to the socket, in order with every other frame of that socket.
 */
export interface FrameSink {
  /** The graphql-ws operation id, spliced into each frame. */
  id: string;
  /**
   * Writes one whole frame; does nothing once the socket is closed. While the socket holds more
   * than it should unsent, a promise that settles once this frame has gone to the kernel (the
   * stream waits on it, so a slow reader's events wait in its feed, which bounds them).
   */
  write(frame: string): Promise<void> | undefined;
  /** A result with errors as the client may see it (masked as over HTTP). */
  mask(result: ExecutionResult, ctx: GraphQLContext): FormattedExecutionResult;
}

/** One execution of an event for an operation, and whether it read the viewer. */
interface Execution {
  result: Promise<ExecutionResult>;
  /** Whose context it ran with. */
  viewerId: string;
  /** Set while it runs: true once a resolver read `ctx.viewer` or a per-viewer loader. */
  readViewer: boolean;
}

/** Executions per event object (the hub fans one object out to every feed) and per share key. */
const shared = new WeakMap<object, Map<string, Execution>>();
/** The JSON of each shared result without errors, made once for every subscriber that gets it. */
const serialised = new WeakMap<ExecutionResult, string>();

/**
 * `subscribe` for graphql-ws: like graphql-js's, but an event that reaches many subscribers of the
 * same operation (same document, and the same values of the variables its selection reads) is
 * executed once and every one of them gets that result. Whether a result depends on the viewer is not declared anywhere: it is learned from the
 * execution itself — a resolver that reads `ctx.viewer` or a loader under `ctx.loaders.viewer`
 * marks it — so a new viewer-dependent field cannot be missed. Such an operation is executed per
 * viewer from then on. Each event runs with fresh loaders, so what it shows is current.
 *
 * With a `FrameSink` in the context (graphql-ws over `ws`, see `src/http/websocket.ts`) the results
 * do not go back through graphql-ws: each is serialised once per share key and written as a `next`
 * frame with this subscription's id spliced in (`writeFrames`); graphql-ws only sees the stream end.
 */
export async function subscribeShared(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source;
  const ctx = args.contextValue as GraphQLContext;
  const viewerId = ctx.viewer?.id ?? '';
  const shape = shapeOf(args);
  /** Learned from this subscription's first event: its results differ per viewer. */
  let perViewer = false;

  const run = (event: object, key: string): Execution => {
    const execution: Execution = { viewerId, readViewer: false, result: Promise.resolve({}) };
    const contextValue = watchViewer({ ...ctx, loaders: ctx.newLoaders() }, () => (execution.readViewer = true));
    execution.result = Promise.resolve(execute({ ...args, rootValue: event, contextValue }));
    let byKey = shared.get(event);
    if (!byKey) shared.set(event, (byKey = new Map()));
    byKey.set(key, execution);
    return execution;
  };

  const resultFor = async (event: unknown): Promise<ExecutionResult> => {
    if (typeof event !== 'object' || event === null) return execute({ ...args, rootValue: event });
    const key = perViewer ? `${shape}\u0000${viewerId}` : shape;
    let execution = shared.get(event)?.get(key) ?? run(event, key);
    const result = await execution.result;
    if (!execution.readViewer || execution.viewerId === viewerId) {
      perViewer ||= execution.readViewer;
      return result;
    }
    perViewer = true; // another viewer's result: run this one's own
    execution = shared.get(event)?.get(`${shape}\u0000${viewerId}`) ?? run(event, `${shape}\u0000${viewerId}`);
    return execution.result;
  };

  const events = source[Symbol.asyncIterator]();
  return ctx.frames ? writeFrames(events, resultFor, ctx.frames, ctx) : mapAsyncIterator(events, resultFor);
}

/**
 * Pumps `events` into `sink` as `next` frames, `{"id":<id>,"type":"next","payload":<result>}`
 * byte for byte as graphql-ws would write them; the shared results' JSON is made once. Returns the
 * iterator graphql-ws holds: its `next()` settles only when the stream ends (then graphql-ws sends
 * `complete`) or fails (then `error`); its `return()` (the client's `complete`, a closed socket)
 * ends the stream, and nothing is written after it.
 */
function writeFrames(
  events: AsyncIterator<unknown>,
  resultFor: (event: unknown) => Promise<ExecutionResult>,
  sink: FrameSink,
  ctx: GraphQLContext,
): AsyncIterableIterator<ExecutionResult> {
  const prefix = `{"id":${JSON.stringify(sink.id)},"type":"next","payload":`;
  let stopped = false;
  const ended = (async () => {
    for (;;) {
      const step = await events.next();
      if (step.done || stopped) return;
      const result = await resultFor(step.value);
      if (stopped) return;
      const flushed = sink.write(`${prefix}${payloadJson(result, sink, ctx)}}`);
      if (flushed) await flushed;
    }
  })();
  ended.catch(() => undefined); // a failure after return() has no one to tell
  const done = { done: true, value: undefined } as const;
  const stop = async () => {
    stopped = true;
    await events.return?.();
  };
  const iterator: AsyncIterableIterator<ExecutionResult> = {
    [Symbol.asyncIterator]: () => iterator,
    next: () => ended.then(() => done),
    return: () => stop().then(() => done),
    throw: (err: unknown) => stop().then(() => Promise.reject(err)),
  };
  return iterator;
}

/** A result's JSON: a shared one's made once; one with errors masked for this subscriber. */
function payloadJson(result: ExecutionResult, sink: FrameSink, ctx: GraphQLContext): string {
  if (result.errors?.length) return JSON.stringify(sink.mask(result, ctx));
  let json = serialised.get(result);
  if (json === undefined) serialised.set(result, (json = JSON.stringify(result)));
  return json;
}

/** Each document's text, printed once (subscriptions of one query text share one document, see `prepareOperation`). */
const texts = new WeakMap<DocumentNode, string>();
function printed(document: DocumentNode): string {
  let text = texts.get(document);
  if (text === undefined) texts.set(document, (text = print(document)));
  return text;
}

/**
 * What makes two subscriptions execute an event alike: the document, the operation, and the values
 * of the variables read below the root field. The root field's own arguments choose the stream
 * (the room, the resume point `after`), not how an event is read, so clients that resumed from
 * different cursors still share one execution.
 */
function shapeOf(args: ExecutionArgs): string {
  const read = new Set<string>();
  const collect = (node: ASTNode) => visit(node, { Variable: (v) => void read.add(v.name.value) });
  for (const definition of args.document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) {
      collect(definition);
      continue;
    }
    for (const directive of definition.directives ?? []) collect(directive);
    for (const selection of definition.selectionSet.selections) {
      if (selection.kind !== Kind.FIELD) collect(selection);
      else for (const part of [...(selection.directives ?? []), ...(selection.selectionSet ? [selection.selectionSet] : [])]) collect(part);
    }
  }
  const values = args.variableValues ?? {};
  const readValues = Object.fromEntries([...read].sort().map((name) => [name, values[name]]));
  return JSON.stringify([printed(args.document), readValues, args.operationName ?? null]);
}

/** The context with its viewer and per-viewer loaders watched: `onRead` is told when either is read. */
function watchViewer(ctx: GraphQLContext, onRead: () => void): GraphQLContext {
  const loaders = Object.defineProperty({ ...ctx.loaders }, 'viewer', {
    get: () => {
      onRead();
      return ctx.loaders.viewer;
    },
  });
  return Object.defineProperty({ ...ctx, loaders }, 'viewer', {
    get: () => {
      onRead();
      return ctx.viewer;
    },
  });
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function';
}
