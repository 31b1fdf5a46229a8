import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  GraphQLError,
  Kind,
  NoSchemaIntrospectionCustomRule,
  OperationTypeNode,
  type ASTVisitor,
  type DirectiveNode,
  type GraphQLSchema,
  type ParseOptions,
  type SelectionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { resolvedFields } from './cost';

/** What an operation may ask for before it runs; the same numbers on HTTP and WebSocket. */
export interface OperationLimits {
  /** Lexical tokens in the whole document (bounds parsing, and nesting with it). */
  maxTokens: number;
  /** Nesting of fields; fragments count for the fields they hold, not as a level. */
  maxDepth: number;
  /** Aliased fields, fragments included (`__typename` is free). */
  maxAliases: number;
  /** Distinct response keys at the root of an operation: each alias counts, as each one runs (`__typename` is free). */
  maxRootFields: number;
  /** Directives, each fragment's counted at every spread of it. */
  maxDirectives: number;
  /** The cost of `src/graphql/cost.ts`. */
  maxCost: number;
  /** False: `__schema` and `__type` are refused and errors suggest no field names. */
  introspection: boolean;
}

/**
 * How often one response key may appear in one selection set. graphql-js compares such fields
 * pairwise (OverlappingFieldsCanBeMerged), so a thousand-token document of `me { id }` repeated
 * would cost it tens of milliseconds; no client repeats a field that often.
 */
export const MAX_REPEATED_FIELD = 10;

/** The parse and validation settings every operation goes through, on both transports. */
export interface OperationRules {
  limits: OperationLimits;
  /** The fields with their own resolver, priced as I/O by the cost limit. */
  resolvedFields: ReadonlySet<string>;
  parseOptions: ParseOptions;
  /** The limits, checked before graphql-js's own rules (`specifiedRules`), which cost more. */
  validationRules: ValidationRule[];
}

/**
 * Builds the rules from the limits: graphql-js's own token limit while parsing, GraphQL Armor's
 * depth and alias rules, rules of its own for directives, root fields, repeated fields and a
 * subscription's root (which graphql-js 16 would throw on), and graphql-js's introspection rule
 * when introspection is off. Each refusal is an ordinary validation error (not a thrown one). Call it
 * before Apollo Server starts with the schema (see `resolvedFields`).
 */
export function createOperationRules(limits: OperationLimits, schema: GraphQLSchema): OperationRules {
  const report = [(context: ValidationContext | null, error: GraphQLError) => context?.reportError(error)];
  const armor = { exposeLimits: true, propagateOnRejection: false, onReject: report };
  const validationRules: ValidationRule[] = [
    maxDepthRule({ ...armor, n: limits.maxDepth, flattenFragments: true, ignoreIntrospection: true }),
    maxAliasesRule({ ...armor, n: limits.maxAliases }),
    maxDirectivesRule(limits.maxDirectives),
    maxRootFieldsRule(limits.maxRootFields),
    maxRepeatedFieldRule(MAX_REPEATED_FIELD),
    unconditionalSubscriptionRootRule(),
  ];
  if (!limits.introspection) validationRules.push(NoSchemaIntrospectionCustomRule);
  return { limits, resolvedFields: resolvedFields(schema), parseOptions: { maxTokens: limits.maxTokens }, validationRules };
}

/**
 * Removes "Did you mean …?" from a validation message when introspection is off, as Apollo
 * Server's `hideSchemaDetailsFromClientErrors` does: suggestions would list the schema's names.
 */
export function withoutSuggestions(rules: OperationRules, message: string): string {
  return rules.limits.introspection ? message : message.replace(/ ?Did you mean(.+?)\?$/, '');
}

/**
 * Refuses a selection set that names one response key more than `max` times, counting the fields
 * of its inline fragments and of the fragments it spreads (each fragment once, as graphql-js
 * collects them).
 */
function maxRepeatedFieldRule(max: number): ValidationRule {
  return (context): ASTVisitor => ({
    SelectionSet(set) {
      const counts = new Map<string, number>();
      forEachCollected(context, set, (selection) => {
        if (selection.kind !== Kind.FIELD) return;
        const key = selection.alias?.value ?? selection.name.value;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      });
      for (const [key, n] of counts) {
        if (n > max) {
          context.reportError(new GraphQLError(`Field "${key}" is selected ${n} times in one selection set, more than the ${max} allowed.`, { nodes: [set] }));
          return false;
        }
      }
      return undefined;
    },
  });
}

/**
 * Calls `visit` with each selection `set` holds and, through its inline fragments and the
 * fragments it spreads (each fragment once: a cycle ends), theirs: the selections graphql-js
 * collects into one set of fields when it executes `set`.
 */
function forEachCollected(context: ValidationContext, set: SelectionSetNode, visit: (selection: SelectionNode) => void): void {
  const spread = new Set<string>();
  const walk = (inner: SelectionSetNode) => {
    for (const selection of inner.selections) {
      visit(selection);
      if (selection.kind === Kind.INLINE_FRAGMENT) walk(selection.selectionSet);
      else if (selection.kind === Kind.FRAGMENT_SPREAD && !spread.has(selection.name.value)) {
        spread.add(selection.name.value);
        const fragment = context.getFragment(selection.name.value);
        if (fragment) walk(fragment.selectionSet);
      }
    }
  };
  walk(set);
}

/**
 * Refuses an operation with more than `max` directives, a fragment's counted at each spread of it
 * (with the spread's own). GraphQL Armor's rule (2.3.1) forgets the directives of a fragment's
 * second and later spreads, so `...F @include(if: true)` repeated passed any limit.
 */
function maxDirectivesRule(max: number): ValidationRule {
  return (context): ASTVisitor => {
    /** Per fragment, the directives of its definition and of everything it selects (-1 while counted: a cycle counts nothing). */
    const inFragment = new Map<string, number>();
    const count = (set: SelectionSetNode | undefined): number => {
      let n = 0;
      for (const selection of set?.selections ?? []) {
        n += directivesOf(selection.directives);
        if (selection.kind !== Kind.FRAGMENT_SPREAD) n += count(selection.selectionSet);
        else n += fragmentCount(selection.name.value);
      }
      return n;
    };
    const fragmentCount = (name: string): number => {
      const known = inFragment.get(name);
      if (known !== undefined) return Math.max(known, 0);
      inFragment.set(name, -1);
      const fragment = context.getFragment(name);
      const n = fragment ? directivesOf(fragment.directives) + count(fragment.selectionSet) : 0;
      inFragment.set(name, n);
      return n;
    };
    return {
      OperationDefinition(operation) {
        const variables = (operation.variableDefinitions ?? []).reduce((n, v) => n + directivesOf(v.directives), 0);
        const n = directivesOf(operation.directives) + variables + count(operation.selectionSet);
        if (n > max) context.reportError(new GraphQLError(`Directives limit of ${max} exceeded, found ${n}.`, { nodes: [operation] }));
      },
    };
  };
}

const directivesOf = (directives: readonly DirectiveNode[] | undefined) => directives?.length ?? 0;

/** Refuses an operation whose root selects more than `max` distinct response keys (an alias counts; `__typename` aside). */
function maxRootFieldsRule(max: number): ValidationRule {
  return (context): ASTVisitor => ({
    OperationDefinition(operation) {
      const keys = new Set<string>();
      forEachCollected(context, operation.selectionSet, (selection) => {
        if (selection.kind === Kind.FIELD && selection.name.value !== '__typename') keys.add(selection.alias?.value ?? selection.name.value);
      });
      if (keys.size > max) {
        context.reportError(new GraphQLError(`Root fields limit of ${max} exceeded, found ${keys.size}.`, { nodes: [operation] }));
      }
    },
  });
}

/**
 * Refuses a subscription whose root selection is conditional (`@skip` or `@include` on a root
 * field, or on a fragment or spread at the root), as the GraphQL specification's single root
 * field rule does since 2025 (graphql-js 17). A subscription's one field is its event stream: it
 * cannot be there or not by a variable's value, and graphql-js 16, which does not check this,
 * throws while validating or subscribing to such a document instead of answering it.
 */
function unconditionalSubscriptionRootRule(): ValidationRule {
  return (context): ASTVisitor => ({
    OperationDefinition(operation) {
      if (operation.operation !== OperationTypeNode.SUBSCRIPTION) return;
      let conditional = false;
      forEachCollected(context, operation.selectionSet, (selection) => {
        conditional ||= selection.directives?.some((d) => d.name.value === 'skip' || d.name.value === 'include') === true;
      });
      if (!conditional) return;
      const name = operation.name ? `Subscription "${operation.name.value}"` : 'Anonymous Subscription';
      context.reportError(new GraphQLError(`${name} must not use \`@skip\` or \`@include\` directives in the top level selection.`, { nodes: [operation] }));
    },
  });
}
