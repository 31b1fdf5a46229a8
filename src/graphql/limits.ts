import { maxAliasesRule } from '@escape.tech/graphql-armor-max-aliases';
import { maxDepthRule } from '@escape.tech/graphql-armor-max-depth';
import {
  GraphQLError,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type ASTVisitor,
  type DirectiveNode,
  type GraphQLSchema,
  type ParseOptions,
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
 * depth and alias rules, a directive rule and a root-field rule, and graphql-js's introspection
 * rule when introspection is off. Each refusal is an ordinary validation error (not a thrown one). Call it
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

/** Refuses a selection set (inline fragments included) that names one response key more than `max` times. */
function maxRepeatedFieldRule(max: number): ValidationRule {
  return (context): ASTVisitor => ({
    SelectionSet(set) {
      const counts = new Map<string, number>();
      const count = (inner: SelectionSetNode) => {
        for (const selection of inner.selections) {
          if (selection.kind === Kind.INLINE_FRAGMENT) count(selection.selectionSet);
          else if (selection.kind === Kind.FIELD) {
            const key = selection.alias?.value ?? selection.name.value;
            counts.set(key, (counts.get(key) ?? 0) + 1);
          }
        }
      };
      count(set);
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
      const visited = new Set<string>();
      const collect = (set: SelectionSetNode) => {
        for (const selection of set.selections) {
          if (selection.kind === Kind.FIELD) {
            if (selection.name.value !== '__typename') keys.add(selection.alias?.value ?? selection.name.value);
          } else if (selection.kind === Kind.INLINE_FRAGMENT) {
            collect(selection.selectionSet);
          } else if (!visited.has(selection.name.value)) {
            visited.add(selection.name.value);
            const fragment = context.getFragment(selection.name.value);
            if (fragment) collect(fragment.selectionSet);
          }
        }
      };
      collect(operation.selectionSet);
      if (keys.size > max) {
        context.reportError(new GraphQLError(`Root fields limit of ${max} exceeded, found ${keys.size}.`, { nodes: [operation] }));
      }
    },
  });
}
