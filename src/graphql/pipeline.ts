import type { ApolloServerPlugin } from '@apollo/server';
import { createHash } from 'node:crypto';
import {
  getOperationAST,
  getVariableValues,
  GraphQLError,
  parse,
  print,
  specifiedRules,
  validate,
  type DocumentNode,
  type ExecutionArgs,
  type GraphQLFormattedError,
  type GraphQLSchema,
} from 'graphql';
import { LRUCache } from 'lru-cache';
import { AppError, ErrorCode } from '../errors';
import { checkCost } from './cost';
import { documentBytes } from './document-bytes';
import { withoutSuggestions, type OperationRules } from './limits';

/** How many admitted query texts keep their parsed document, and how many bytes they may hold in all (`documentBytes`). */
const ADMITTED_DOCUMENTS = 500;
const ADMITTED_DOCUMENT_BYTES = 16 * 1024 * 1024;
/**
 * Per schema and rules (one pair per app), the query texts that parsed and passed validation, the
 * least recently used leaving first: thousands of sockets subscribing with the same text share one
 * document and skip parsing and validating it again. Variables, the operation and the cost are
 * still checked per operation.
 */
const admitted = new WeakMap<GraphQLSchema, WeakMap<OperationRules, LRUCache<string, DocumentNode>>>();

function admittedDocuments(schema: GraphQLSchema, rules: OperationRules): LRUCache<string, DocumentNode> {
  let byRules = admitted.get(schema);
  if (!byRules) admitted.set(schema, (byRules = new WeakMap()));
  let documents = byRules.get(rules);
  if (!documents) byRules.set(rules, (documents = new LRUCache({ max: ADMITTED_DOCUMENTS, maxSize: ADMITTED_DOCUMENT_BYTES, sizeCalculation: documentBytes })));
  return documents;
}

/** A document as a live subscription keeps it (`subscriptionDocument`), and about what it holds in bytes. */
export interface KeptDocument {
  document: DocumentNode;
  bytes: number;
}

const kept = new WeakMap<DocumentNode, KeptDocument>();

/**
 * The document a subscription runs with for its life: the admitted one printed and parsed again
 * without locations, made once per admitted document (the subscriptions of one query text share
 * it). It keeps nothing of what the client sent: not the text with its comments and padding, not
 * the parser's tokens (each comment line one), nor names sliced from that text, which would keep
 * the text whole. Its nodes carry no locations, so an error in one of its events has a `path` but
 * no `locations`. Its `bytes` count its syntax tree and the printed text its names are sliced from.
 */
export function subscriptionDocument(document: DocumentNode): KeptDocument {
  let compact = kept.get(document);
  if (!compact) {
    const text = print(document);
    const reparsed = parse(text, { noLocation: true });
    kept.set(document, (compact = { document: reparsed, bytes: documentBytes(reparsed) + 2 * text.length }));
  }
  return compact;
}

/**
 * Apollo's automatic persisted queries (`extensions.persistedQuery`) checked as Apollo Server checks
 * them over HTTP: the version must be 1, and a text sent with a hash must be the hash's. The
 * WebSocket transport keeps no texts by hash (graphql-ws sends a text with every operation): a hash
 * with no text is PERSISTED_QUERY_NOT_FOUND, and the client sends it again with its text.
 */
function persistedQueryRefusal(query: unknown, extensions: unknown): GraphQLError | undefined {
  const persisted = isRecord(extensions) ? extensions.persistedQuery : undefined;
  if (!persisted) return undefined; // as Apollo Server: null and false are no persisted query
  if (!isRecord(persisted) || persisted.version !== 1) return new GraphQLError('Unsupported persisted query version', { extensions: { http: BAD } });
  if (typeof query !== 'string' || query === '') return new GraphQLError('PersistedQueryNotFound', { extensions: { code: 'PERSISTED_QUERY_NOT_FOUND', http: BAD } });
  if (createHash('sha256').update(query).digest('hex') !== persisted.sha256Hash) return new GraphQLError('provided sha does not match query', { extensions: { http: BAD } });
  return undefined;
}

/**
 * The one way an operation is admitted, whatever the transport (README.md, Security):
 * parse with the token limit, validate with graphql-js's rules plus the limits, resolve the
 * operation, coerce the variables, price it. Each step refuses with the code Apollo Server gives
 * the same failure over HTTP, so a client sees one answer on both transports:
 *
 * | step | code |
 * | --- | --- |
 * | no query, variables not an object | `BAD_REQUEST` |
 * | parse (syntax, too many tokens, too deep to parse) | `GRAPHQL_PARSE_FAILED` |
 * | validation (graphql-js, depth, aliases, root fields, directives, introspection) | `GRAPHQL_VALIDATION_FAILED` |
 * | unknown or missing operation name | `OPERATION_RESOLUTION_FAILURE` |
 * | variables that do not coerce | `BAD_USER_INPUT` |
 * | cost over the limit, or not measurable | `BAD_REQUEST` |
 *
 * Over HTTP, Apollo Server parses with the same `parseOptions` and `limitsPlugin` calls
 * `admitDocument`, the same function as here, for the rest.
 */
export function prepareOperation(
  schema: GraphQLSchema,
  rules: OperationRules,
  payload: { query?: unknown; variables?: unknown; operationName?: unknown; extensions?: unknown },
): Omit<ExecutionArgs, 'contextValue'> | GraphQLError[] {
  const { query } = payload;
  const persisted = persistedQueryRefusal(query, payload.extensions);
  if (persisted) return [persisted];
  if (typeof query !== 'string' || query === '') {
    return [requestError(ErrorCode.BadRequest, 'GraphQL operations must contain a non-empty `query` or a `persistedQuery` extension.')];
  }
  const operationName = typeof payload.operationName === 'string' ? payload.operationName : undefined;
  const documents = admittedDocuments(schema, rules);
  const cached = documents.get(query);
  let document: DocumentNode;
  try {
    document = cached ?? parse(query, rules.parseOptions);
  } catch (err) {
    // graphql-js throws a GraphQLError for syntax; a RangeError would mean nesting beyond the stack.
    const message = err instanceof GraphQLError ? err.message : 'Syntax Error: the document cannot be parsed.';
    return [new GraphQLError(message, { extensions: { code: 'GRAPHQL_PARSE_FAILED', http: BAD }, ...(err instanceof GraphQLError ? { nodes: err.nodes, source: err.source, positions: err.positions } : {}) })];
  }
  if (payload.variables != null && !isRecord(payload.variables)) {
    return [requestError(ErrorCode.BadRequest, '`variables` in a POST body must be an object if provided.')];
  }
  const variables = isRecord(payload.variables) ? payload.variables : {};
  const refused = admitDocument(schema, rules, document, operationName, variables, cached !== undefined);
  if (refused) return refused;
  if (!cached) documents.set(query, document);
  return { schema, document, operationName, variableValues: variables };
}

/**
 * Everything after parsing, the same function on both transports: the limits first (cheap), then
 * graphql-js's rules, then the operation must resolve, the variables coerce, and the cost stay
 * within the limit. Returns the refusals (with Apollo Server's codes and HTTP status 400), or
 * undefined when the operation may run.
 */
export function admitDocument(
  schema: GraphQLSchema,
  rules: OperationRules,
  document: DocumentNode,
  operationName: string | undefined,
  variables: Record<string, unknown>,
  /** The document passed validation before (`prepareOperation`'s cache): only the rest is checked. */
  validated = false,
): GraphQLError[] | undefined {
  const overLimits = validated ? [] : validate(schema, document, rules.validationRules);
  const invalid = overLimits.length || validated ? overLimits : validate(schema, document, specifiedRules);
  if (invalid.length > 0) {
    // GraphQL Armor words its refusals "Syntax Error: …", though the document parsed: not here.
    return invalid.map(
      (e) =>
        new GraphQLError(withoutSuggestions(rules, e.message.replace(/^Syntax Error: /, '')), {
          nodes: e.nodes,
          extensions: { ...e.extensions, code: 'GRAPHQL_VALIDATION_FAILED', http: BAD },
        }),
    );
  }
  const operation = getOperationAST(document, operationName);
  if (!operation) return [requestError('OPERATION_RESOLUTION_FAILURE', operationResolutionMessage(document, operationName))];
  const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables, { maxErrors: 1 });
  if (coerced.errors) {
    const [error] = coerced.errors;
    return [new GraphQLError(error.message, { nodes: error.nodes, extensions: { code: ErrorCode.BadUserInput, http: BAD } })];
  }
  try {
    checkCost(schema, document, coerced.coerced, operation.name?.value, rules.limits.maxCost, rules.resolvedFields);
  } catch (err) {
    if (err instanceof GraphQLError) return [err];
    throw err;
  }
  return undefined;
}

/**
 * The HTTP half: Apollo Server parses with `rules.parseOptions` and runs no validation of its own
 * (`dangerouslyDisableValidation`); this plugin admits the document with `admitDocument`, as the
 * WebSocket transport does, then refuses subscriptions (they run over WebSocket).
 */
export function limitsPlugin(
  schema: GraphQLSchema,
  rules: OperationRules,
  /** What the server's `formatError` makes of an error (for the refusals past the first). */
  format: (error: GraphQLError) => GraphQLFormattedError,
): ApolloServerPlugin {
  // Apollo Server's document store hands the same DocumentNode for the same query text: one that
  // was admitted once passed validation, so only its variables, operation and cost are checked again.
  const validated = new WeakSet<DocumentNode>();
  return {
    async requestDidStart() {
      let refusals: GraphQLError[] | undefined;
      return {
        async didResolveOperation({ operation, document, request }) {
          const refused = admitDocument(schema, rules, document, request.operationName ?? undefined, request.variables ?? {}, validated.has(document));
          // Apollo Server answers the one error this hook throws; the answer gets all of them below,
          // as over WebSocket.
          refusals = refused;
          if (refused) throw refused[0];
          validated.add(document);
          if (operation?.operation === 'subscription') {
            throw new AppError(ErrorCode.BadRequest, 'Subscriptions run over WebSocket: connect to /graphql with the graphql-transport-ws protocol', {
              http: { status: 400 },
            });
          }
        },
        async willSendResponse({ response }) {
          if (refusals && refusals.length > 1 && response.body.kind === 'single') response.body.singleResult.errors = refusals.map(format);
        },
      };
    },
  };
}

const BAD = { status: 400 };

function requestError(code: string, message: string): GraphQLError {
  return new GraphQLError(message, { extensions: { code, http: BAD } });
}

/** graphql-js's words for an operation it cannot pick (what Apollo Server passes on over HTTP). */
function operationResolutionMessage(document: DocumentNode, operationName: string | undefined): string {
  if (operationName !== undefined) return `Unknown operation named "${operationName}".`;
  const operations = document.definitions.filter((d) => d.kind === 'OperationDefinition');
  return operations.length === 0 ? 'Must provide an operation.' : 'Must provide operation name if query contains multiple operations.';
}

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);
