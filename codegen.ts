import type { CodegenConfig } from '@graphql-codegen/cli';

/** Resolver types from schema/*.graphql, mapped to the service-layer models. */
const config: CodegenConfig = {
  schema: 'schema/*.graphql',
  generates: {
    [process.env.CODEGEN_OUT ?? 'src/graphql/generated.ts']: {
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
  },
};

export default config;
