import { isObjectType, Kind, visit, type DocumentNode, type GraphQLSchema } from 'graphql';
import { getComplexity, simpleEstimator, type ComplexityEstimator } from 'graphql-query-complexity';
import { AppError, ErrorCode } from '../errors';

/** The default most an operation may cost (`MAX_QUERY_COST`). */
export const MAX_OPERATION_COST = 10_000;

/** What a root read or subscription costs before its selection: at least one database round trip. */
export const ROOT_FIELD_COST = 10;
/** A field with its own resolver (a batched load, a lookup) costs this much more than a plain one. */
export const RESOLVED_FIELD_COST = 2;

/** The fields that return a page (a connection, or a list such as `users`), and their sizes when `first`/`last` are not given (as the services default them). */
const DEFAULT_PAGE: Record<string, number> = { messages: 50, rooms: 20, publicRooms: 20, searchMessages: 20, members: 20, users: 20 };

/** What one call of a mutation costs: a write, and for accounts a deliberately slow password hash. */
const MUTATION_COST: Record<string, number> = { signUp: 500, logIn: 500 };
const DEFAULT_MUTATION_COST = 50;

/** Writes cost more than reads: at most 200 of them (20 sign-ups or log-ins) in one operation. */
const writes: ComplexityEstimator = ({ type, field, childComplexity }) =>
  type.name === 'Mutation' ? (MUTATION_COST[field.name] ?? DEFAULT_MUTATION_COST) + childComplexity : undefined;

/** A page costs a read plus its size times what is selected in each item. */
const pages: ComplexityEstimator = ({ type, field, args, childComplexity }) => {
  const fallback = DEFAULT_PAGE[field.name];
  if (fallback === undefined) return undefined;
  const size = Number(args.first ?? args.last ?? fallback);
  const read = type.name === 'Query' || type.name === 'Subscription' ? ROOT_FIELD_COST : RESOLVED_FIELD_COST;
  return read + Math.max(1, Number.isFinite(size) ? size : fallback) * childComplexity;
};

/**
 * The fields that have their own resolver (`Type.field`), read from the schema as built: take it
 * before Apollo Server instruments the schema, which gives every field a resolver.
 */
export function resolvedFields(schema: GraphQLSchema): ReadonlySet<string> {
  const names = new Set<string>();
  for (const type of Object.values(schema.getTypeMap())) {
    if (!isObjectType(type) || type.name.startsWith('__')) continue;
    for (const field of Object.values(type.getFields())) if (field.resolve || field.subscribe) names.add(`${type.name}.${field.name}`);
  }
  return names;
}

/**
 * Fields priced by what they do, read from the schema rather than from a list: a root field
 * (`me`, `room`, a subscription) is a database round trip; a field with its own resolver (an
 * author, a room, a role) is a batched load; a plain property is 1.
 */
const io =
  (resolved: ReadonlySet<string>): ComplexityEstimator =>
  ({ type, field, childComplexity }) => {
    if (field.name.startsWith('__')) return 0;
    if (type.name === 'Query' || type.name === 'Subscription') return ROOT_FIELD_COST + childComplexity;
    if (resolved.has(`${type.name}.${field.name}`)) return RESOLVED_FIELD_COST + childComplexity;
    return undefined;
  };

/**
 * Refuses an operation that would cost more than `maxCost` (e.g. many aliased history pages)
 * with BAD_REQUEST, before it runs. Fails closed: an operation the estimator cannot measure
 * (too many nodes once fragments are expanded, or anything it throws on) is refused as well.
 * Call it with a validated document, a resolved operation and coerced variables.
 */
export function checkCost(
  schema: GraphQLSchema,
  query: DocumentNode,
  variables: Record<string, unknown>,
  operationName: string | null | undefined,
  maxCost: number,
  resolved: ReadonlySet<string>,
): void {
  const fixed = fixedCosts(schema, query);
  let cost = fixed?.get(operationName ?? '');
  if (cost === undefined) {
    try {
      cost = getComplexity({
        schema,
        query,
        variables,
        operationName: operationName ?? undefined,
        maxQueryNodes: 10_000,
        estimators: [writes, pages, io(resolved), simpleEstimator({ defaultComplexity: 1 })],
      });
    } catch {
      throw new AppError(ErrorCode.BadRequest, 'This operation cannot be measured against the cost limit: ask for less in one operation', {
        http: { status: 400 },
      });
    }
    fixed?.set(operationName ?? '', cost);
  }
  if (!(cost <= maxCost)) {
    throw new AppError(ErrorCode.BadRequest, `This operation costs ${cost}, more than the ${maxCost} allowed: ask for fewer or smaller pages`, {
      http: { status: 400 },
      cost,
      maxCost,
    });
  }
}

/** Per schema and document: its operations' costs by name, or null when variables price it. */
const costsOf = new WeakMap<GraphQLSchema, WeakMap<DocumentNode, Map<string, number> | null>>();

/**
 * The measured costs of a document's operations by name, when no variable can change them (a
 * client's every send repeats the same document with other variables; measuring it was a
 * thirtieth of a send's CPU); undefined when variables can. Of the estimators only `pages` reads
 * argument values (`first`, `last`), and only `@skip`/`@include` make a field count or not: a
 * document with no variable in either is priced the same whatever its variables.
 */
function fixedCosts(schema: GraphQLSchema, document: DocumentNode): Map<string, number> | undefined {
  let bySchema = costsOf.get(schema);
  if (!bySchema) costsOf.set(schema, (bySchema = new WeakMap()));
  let costs = bySchema.get(document);
  if (costs === undefined) bySchema.set(document, (costs = variablesPrice(document) ? null : new Map()));
  return costs ?? undefined;
}

function variablesPrice(document: DocumentNode): boolean {
  let priced = false;
  visit(document, {
    Argument(node) {
      if ((node.name.value === 'first' || node.name.value === 'last') && node.value.kind === Kind.VARIABLE) priced = true;
    },
    Directive(node) {
      if (node.arguments?.some((argument) => argument.value.kind === Kind.VARIABLE)) priced = true;
    },
  });
  return priced;
}
