import { MapperKind, mapSchema } from '@graphql-tools/utils';
import {
  getNullableType,
  isInputObjectType,
  isListType,
  isScalarType,
  type GraphQLArgumentConfig,
  type GraphQLFieldResolver,
  type GraphQLInputType,
  type GraphQLSchema,
} from 'graphql';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A UUID in any letter case, as PostgreSQL writes it (lowercase); anything else as it is. */
export const canonicalId = (value: unknown): unknown => (typeof value === 'string' && UUID.test(value) ? value.toLowerCase() : value);

/**
 * The schema with every `ID` argument and `ID` input field canonicalised before any resolver or
 * subscription sees it: a room named in upper case is the same room, the same hub and the same
 * cursor string as in lower case. The one place ids enter the server is here, not in each service.
 */
export function withCanonicalIds(schema: GraphQLSchema): GraphQLSchema {
  return mapSchema(schema, {
    [MapperKind.OBJECT_FIELD]: (field) => {
      const args = field.args ?? {};
      if (!Object.values(args).some((arg) => holdsId(arg.type))) return field;
      const canonical = (raw: Record<string, unknown>) => canonicalArgs(args, raw);
      return {
        ...field,
        resolve: field.resolve && wrap(field.resolve, canonical),
        subscribe: field.subscribe && wrap(field.subscribe, canonical),
      };
    },
  });
}

function wrap<S, C>(resolver: GraphQLFieldResolver<S, C>, canonical: (args: Record<string, unknown>) => Record<string, unknown>): GraphQLFieldResolver<S, C> {
  return (source, args, context, info) => resolver(source, canonical(args), context, info);
}

function canonicalArgs(defs: Record<string, GraphQLArgumentConfig>, args: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...args };
  for (const [name, def] of Object.entries(defs)) if (name in out) out[name] = canonicalValue(def.type, out[name]);
  return out;
}

function canonicalValue(type: GraphQLInputType, value: unknown): unknown {
  if (value === null || value === undefined) return value;
  const inner = getNullableType(type);
  if (isListType(inner)) return Array.isArray(value) ? value.map((v) => canonicalValue(inner.ofType, v)) : canonicalValue(inner.ofType, value);
  if (isScalarType(inner)) return inner.name === 'ID' ? canonicalId(value) : value;
  if (isInputObjectType(inner) && typeof value === 'object') {
    const fields = inner.getFields();
    const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    for (const [name, field] of Object.entries(fields)) if (name in out) out[name] = canonicalValue(field.type, out[name]);
    return out;
  }
  return value;
}

/** True when a value of this type may hold an ID somewhere (guards against cyclic input types). */
function holdsId(type: GraphQLInputType, seen = new Set<string>()): boolean {
  const inner = getNullableType(type);
  if (isListType(inner)) return holdsId(inner.ofType, seen);
  if (isScalarType(inner)) return inner.name === 'ID';
  if (isInputObjectType(inner)) {
    if (seen.has(inner.name)) return false;
    seen.add(inner.name);
    return Object.values(inner.getFields()).some((f) => holdsId(f.type, seen));
  }
  return false;
}
