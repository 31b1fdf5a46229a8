/** One message of the conversation sent to the model. */
export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * A chat model that streams its answer as text pieces. The only implementation talks to an
 * OpenAI-compatible endpoint (`openai-model.ts`); tests run it against a local fake server.
 */
export interface ChatModel {
  /**
   * Streams the reply; stops (without error) when `signal` aborts; throws on upstream failure,
   * also when the answer ends without finishing. Calls `started` once the response has begun
   * (before that, the provider's own timeout and retries apply).
   */
  stream(turns: ChatTurn[], signal: AbortSignal, started?: () => void): AsyncIterable<string>;
  /** A sentence a person can read for an error thrown by `stream`. */
  describeFailure(err: unknown): string;
}
