import { isEnumType, isInputObjectType, isInterfaceType, isObjectType, isUnionType, type GraphQLNamedType } from 'graphql';
import { createSchema } from '../../src/graphql/schema';

/** Every type, field, argument and enum value of ours that lacks a description (GraphiQL is our documentation). */
function undocumented(type: GraphQLNamedType): string[] {
  const missing: string[] = [];
  if (!type.description) missing.push(type.name);
  if (isObjectType(type) || isInterfaceType(type)) {
    for (const field of Object.values(type.getFields())) {
      if (!field.description) missing.push(`${type.name}.${field.name}`);
      for (const arg of field.args) if (!arg.description) missing.push(`${type.name}.${field.name}(${arg.name})`);
    }
  }
  if (isInputObjectType(type)) {
    for (const field of Object.values(type.getFields())) if (!field.description) missing.push(`${type.name}.${field.name}`);
  }
  if (isEnumType(type)) {
    for (const value of type.getValues()) if (!value.description) missing.push(`${type.name}.${value.name}`);
  }
  if (isUnionType(type) && !type.description) missing.push(type.name);
  return missing;
}

describe('schema/', () => {
  it('describes every type, field, argument and enum value', () => {
    const schema = createSchema();
    const ours = Object.values(schema.getTypeMap()).filter((t) => !t.name.startsWith('__') && !['String', 'Int', 'Float', 'Boolean', 'ID'].includes(t.name));
    expect(ours.flatMap(undocumented)).toEqual([]);
  });

  it('keeps the operation names of API.md', () => {
    const schema = createSchema();
    const names = (t: { getFields(): object } | null | undefined) => Object.keys(t?.getFields() ?? {});
    expect(names(schema.getQueryType())).toEqual(expect.arrayContaining(['me', 'room', 'rooms', 'messages']));
    expect(names(schema.getMutationType())).toEqual(
      expect.arrayContaining(['signUp', 'logIn', 'createRoom', 'joinRoom', 'addMember', 'sendMessage', 'askAssistant']),
    );
    expect(names(schema.getSubscriptionType())).toEqual(expect.arrayContaining(['messageAdded', 'roomEvents']));
  });
});
