// Which users a message's body mentions (src/chat/message-store.ts): `@username` as people write it.
import { mentionedNames } from '../../src/chat/message-store';

it.each([
  ['@ada_lovelace, look', ['ada_lovelace']],
  ['(@Ada) and @ADA again, then @bob.', ['ada', 'bob']],
  ['mail ada@example.org', []],
  ['@@ada and x@ada', []],
  ['@ab is too short', []],
  ['@ada\u0307 has a dot over its last letter', []],
  ['@ada\u0301', []],
  ['@ada\u200B is followed by a zero-width space', ['ada']],
])('finds in %j the names %j', (body, names) => {
  expect(mentionedNames(body)).toEqual(names);
});
