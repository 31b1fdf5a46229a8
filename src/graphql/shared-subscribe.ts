import { BREAK, createSourceEventStream, execute, print, visit, type ExecutionArgs, type ExecutionResult } from 'graphql';
import type { GraphQLContext } from './context';

/**
 * Fields whose value depends on who asks. A subscription that selects one is executed for each
 * subscriber; any other is executed once per event and the result shared. Add a field here when
 * its resolver reads `ctx.viewer`.
 */
export const VIEWER_DEPENDENT_FIELDS = new Set(['viewerRole']);

type Result = ExecutionResult | Promise<ExecutionResult>;

/** Results per event object (the hub fans one object out to every feed) and per share key. */
const shared = new WeakMap<object, Map<string, Result>>();

/**
 * `subscribe` for graphql-ws: like graphql-js's, but an event that reaches many subscribers of the
 * same operation (same document, variables and, where it matters, viewer) is executed once, and
 * every one of them gets that result. Fan-out then costs a socket write per subscriber, not an
 * execution.
 */
export async function subscribeShared(args: ExecutionArgs): Promise<AsyncIterableIterator<ExecutionResult> | ExecutionResult> {
  const source = await createSourceEventStream(args);
  if (!isAsyncIterable(source)) return source;
  const key = shareKey(args);
  const run = (event: unknown): Result => {
    if (typeof event !== 'object' || event === null) return execute({ ...args, rootValue: event });
    let byKey = shared.get(event);
    if (!byKey) shared.set(event, (byKey = new Map()));
    let result = byKey.get(key);
    if (!result) byKey.set(key, (result = execute({ ...args, rootValue: event })));
    return result;
  };
  return mapIterator(source[Symbol.asyncIterator](), run);
}

function shareKey(args: ExecutionArgs): string {
  let perViewer = false;
  visit(args.document, {
    Field(node) {
      if (VIEWER_DEPENDENT_FIELDS.has(node.name.value)) {
        perViewer = true;
        return BREAK;
      }
      return undefined;
    },
  });
  const viewer = perViewer ? ((args.contextValue as GraphQLContext).viewer?.id ?? '') : '';
  return JSON.stringify([print(args.document), args.variableValues ?? {}, args.operationName ?? null, viewer]);
}

function mapIterator<T, R>(source: AsyncIterator<T>, map: (value: T) => R | Promise<R>): AsyncIterableIterator<R> {
  const step = async (result: IteratorResult<T>): Promise<IteratorResult<R>> =>
    result.done ? { done: true, value: undefined } : { done: false, value: await map(result.value) };
  return {
    next: () => source.next().then(step),
    return: async () => (source.return ? step(await source.return()) : { done: true, value: undefined }),
    throw: async (err) => {
      if (source.throw) return step(await source.throw(err));
      throw err;
    },
    [Symbol.asyncIterator]() {
      return this;
    },
  };
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as AsyncIterable<unknown>)?.[Symbol.asyncIterator] === 'function';
}
