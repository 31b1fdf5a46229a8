// What a parsed document holds (src/graphql/document-bytes.ts): the measure that bounds the caches
// of parsed documents (Apollo's store over HTTP, the admitted documents over WebSocket), and the
// document a live subscription keeps (src/graphql/pipeline.ts).
import { parse, print, visit } from 'graphql';
import { documentBytes, DocumentsByBytes } from '../../src/graphql/document-bytes';
import { subscriptionDocument } from '../../src/graphql/pipeline';

const SUBSCRIPTION = 'subscription($r: ID!) { messageAdded(roomId: $r) { id seq body author { username } } }';

it('counts a document padded with a comment by its text, which Apollo’s own measure leaves out', () => {
  const padded = parse(`{ __typename } #${'x'.repeat(900_000)}`);
  expect(JSON.stringify(padded).length).toBeLessThan(1000); // Apollo's measure: the padding is not there
  expect(documentBytes(padded)).toBeGreaterThan(900_000);
  // A body of comment lines: each a token the parser keeps linked from the document.
  const lines = parse(`{ __typename }\n${'#\n'.repeat(300_000)}`);
  expect(documentBytes(lines)).toBeGreaterThan(300_000 * 80);
  // An ordinary document: its syntax tree, several times its text.
  expect(documentBytes(parse(SUBSCRIPTION))).toBeGreaterThan(10 * SUBSCRIPTION.length);
});

it('keeps documents up to its bytes, the least recently used leaving first', async () => {
  const store = new DocumentsByBytes(5 * 1024 * 1024);
  const padded = (n: number) => parse(`{ __typename } #${String(n).repeat(1_000_000)}`);
  for (const n of [1, 2]) await store.set(`k${n}`, padded(n));
  expect(await store.get('k1')).toBeDefined(); // now the most recently used
  await store.set('k3', padded(3)); // over 5 MiB with three (two bytes a character): the least recently used goes
  expect(await store.get('k2')).toBeUndefined();
  expect(await store.get('k1')).toBeDefined();
  expect(await store.get('k3')).toBeDefined();
  // Many small ones fit where a few large ones did.
  for (let i = 0; i < 100; i++) await store.set(`s${i}`, parse(SUBSCRIPTION));
  expect(await store.get('s0')).toBeDefined();
  expect(await store.delete('s0')).toBe(true);
  expect(await store.get('s0')).toBeUndefined();
});

it('gives a live subscription a document that keeps nothing of the text it was sent as', () => {
  const alias = 'aVeryLongAliasSlicedFromTheText';
  const sent = parse(`#${'x'.repeat(100_000)}\n${'#\n'.repeat(10_000)}subscription($r: ID!) { ${alias}: roomEvents(roomId: $r) { __typename } }`);
  const kept = subscriptionDocument(sent);
  expect(subscriptionDocument(sent)).toBe(kept); // made once per admitted document
  expect(print(kept.document)).toBe(print(sent));
  // No locations anywhere: nothing links back to the text or the parser's tokens (comments included).
  let located = 0;
  visit(kept.document, { enter: (node) => void (node.loc && located++) });
  expect(located).toBe(0);
  expect(kept.bytes).toBeLessThan(documentBytes(sent) / 100);
  expect(kept.bytes).toBe(documentBytes(kept.document) + 2 * print(sent).length);
});
