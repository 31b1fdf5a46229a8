import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Everything generated from schema/*.graphql, in one run (`npm run codegen`; `npm test` fails when
 * any of it is stale):
 * - the server's resolver types, mapped to the service-layer models;
 * - the client kit's schema artifact (`client/schema.graphql`);
 * - the client kit's typed documents for every operation in `client/operations/` (client preset);
 * - the client kit's cache facts (`possibleTypes`, Relay connection fields) for `chatCacheConfig`.
 * `CODEGEN_ROOT` writes the same files under another directory (the staleness check).
 */
const root = process.env.CODEGEN_ROOT ? `${process.env.CODEGEN_ROOT}/` : '';

const config: CodegenConfig = {
  schema: 'schema/*.graphql',
  generates: {
    [`${root}src/graphql/generated.ts`]: {
      plugins: ['typescript', 'typescript-resolvers'],
      config: {
        useIndexSignature: true,
        useTypeImports: true,
        enumsAsTypes: true,
        contextType: './context#GraphQLContext',
        scalars: { DateTime: 'Date | string' },
        mappers: {
          User: '../db/entities/user#UserEntity',
          Room: '../chat/models#RoomModel',
          Message: '../chat/models#MessageModel',
          Reaction: '../db/entities/message#ReactionGroup',
          Member: '../chat/membership-service#MemberModel',
          MemberChanged: '../chat/membership-service#MemberChangedModel',
          TypingChanged: '../presence/models#TypingChangedModel',
          PresenceChanged: '../presence/models#PresenceChangedModel',
        },
      },
    },
    [`${root}client/schema.graphql`]: {
      plugins: ['schema-ast'],
      config: { includeDirectives: true, commentDescriptions: false, sort: false },
    },
    [`${root}client/src/cache-policies.ts`]: {
      plugins: ['./scripts/codegen-cache-policies.cjs'],
    },
    [`${root}client/src/generated/`]: {
      preset: 'client',
      documents: ['client/operations/*.graphql'],
      presetConfig: { fragmentMasking: false },
      // Imports with `.js`, as the kit's own: its ESM build (`dist/esm`) must load in Node's ESM too, not only in bundlers.
      config: { useTypeImports: true, enumsAsTypes: true, scalars: { DateTime: 'string' }, skipTypename: false, importExtension: '.js' },
    },
  },
};

export default config;
