import type { DocumentNode, GraphQLSchema } from 'graphql';
import { getComplexity, simpleEstimator, type ComplexityEstimator } from 'graphql-query-complexity';
import { AppError, ErrorCode } from '../errors';

/**
 * The most an operation may cost: a field costs 1, a page of n items n times its selection, a
 * mutation 50 (sign-up and log-in 500) plus its selection.
 */
export const MAX_OPERATION_COST = 10_000;

/** Page sizes when `first`/`last` are not given (as the services default them). */
const DEFAULT_PAGE: Record<string, number> = { messages: 50, rooms: 20 };

/** What one call of a mutation costs: a write, and for accounts a deliberately slow password hash. */
const MUTATION_COST: Record<string, number> = { signUp: 500, logIn: 500 };
const DEFAULT_MUTATION_COST = 50;

/** Writes cost more than reads: at most 200 of them (20 sign-ups or log-ins) in one operation. */
const writes: ComplexityEstimator = ({ type, field, childComplexity }) =>
  type.name === 'Mutation' ? (MUTATION_COST[field.name] ?? DEFAULT_MUTATION_COST) + childComplexity : undefined;

/** A connection field costs its page size times what is selected in each item. */
const pages: ComplexityEstimator = ({ field, args, childComplexity }) => {
  const fallback = DEFAULT_PAGE[field.name];
  if (fallback === undefined) return undefined;
  const size = Number(args.first ?? args.last ?? fallback);
  return 1 + Math.max(1, Number.isFinite(size) ? size : fallback) * childComplexity;
};

/**
 * Refuses an operation that would cost more than MAX_OPERATION_COST (e.g. hundreds of aliased
 * history pages) with BAD_REQUEST, before it runs. An operation that cannot be measured (it does
 * not parse or validate) is left to GraphQL's own errors.
 */
export function checkCost(schema: GraphQLSchema, query: DocumentNode, variables: Record<string, unknown> = {}, operationName?: string | null): void {
  let cost: number;
  try {
    cost = getComplexity({ schema, query, variables, operationName: operationName ?? undefined, estimators: [writes, pages, simpleEstimator({ defaultComplexity: 1 })] });
  } catch {
    return;
  }
  if (cost > MAX_OPERATION_COST) {
    throw new AppError(ErrorCode.BadRequest, `This operation costs ${cost}, more than the ${MAX_OPERATION_COST} allowed: ask for fewer or smaller pages`, {
      http: { status: 400 },
    });
  }
}
