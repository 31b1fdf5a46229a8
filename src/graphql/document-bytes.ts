import type { DocumentStore } from '@apollo/server';
import type { DocumentNode, Token } from 'graphql';
import { LRUCache } from 'lru-cache';

/**
 * About what a parsed document holds in memory, in bytes: its text (comments and padding
 * included: the document's `loc.source` keeps it whole; two bytes a character, as V8 may keep it),
 * its tokens, and its syntax tree, which takes about four
 * times its JSON (measured: 15.7 KB for a 199-character subscription whose JSON is 3.8 KB). Apollo's
 * own measure, the JSON alone, leaves out the text: a query padded with a 900 KB comment counted
 * 412 bytes, so its "30 MiB" store could hold gigabytes.
 */
export function documentBytes(document: DocumentNode): number {
  // Every token the parser read, comments included (which no token limit counts), stays linked
  // from the document's location: a body of `#` lines holds ~45 times its text that way.
  let tokens = 0;
  for (let token: Token | null | undefined = document.loc?.startToken; token; token = token.next) tokens++;
  return 2 * (document.loc?.source.body.length ?? 0) + 4 * JSON.stringify(document).length + TOKEN_BYTES * tokens;
}

/** What one parsed token holds (measured: ~84 bytes). */
const TOKEN_BYTES = 96;

/** Bytes of parsed documents Apollo keeps for the HTTP transport (its default is 30 MiB by its own measure, ~4× that in fact). */
export const HTTP_DOCUMENT_BYTES = 32 * 1024 * 1024;

/**
 * Apollo Server's store of parsed and validated documents (`documentStore`), bounded by what the
 * documents hold (`documentBytes`), least recently used out first.
 */
export class DocumentsByBytes implements DocumentStore {
  private readonly documents: LRUCache<string, DocumentNode>;

  constructor(maxBytes: number) {
    this.documents = new LRUCache({ maxSize: maxBytes, sizeCalculation: documentBytes });
  }

  async get(key: string): Promise<DocumentNode | undefined> {
    return this.documents.get(key);
  }

  async set(key: string, document: DocumentNode): Promise<void> {
    this.documents.set(key, document);
  }

  async delete(key: string): Promise<boolean> {
    return this.documents.delete(key);
  }
}
