import { mapAsyncIterator } from '@graphql-tools/utils';
import { createSourceEventStream, execute, Kind, print, visit, type ASTNode, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { GraphQLContext } from './context';

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

/**
 * `subscribe` for graphql-ws: like graphql-js's, but an event that reaches many subscribers of the
 * same operation (same document, and the same values of the variables its selection reads) is
 * executed once and every one of them gets that result. Whether a result depends on the viewer is not declared anywhere: it is learned from the
 * execution itself — a resolver that reads `ctx.viewer` or a loader under `ctx.loaders.viewer`
 * marks it — so a new viewer-dependent field cannot be missed. Such an operation is executed per
 * viewer from then on. Each event runs with fresh loaders, so what it shows is current.
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

  return mapAsyncIterator(source[Symbol.asyncIterator](), resultFor);
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
  return JSON.stringify([print(args.document), readValues, args.operationName ?? null]);
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
