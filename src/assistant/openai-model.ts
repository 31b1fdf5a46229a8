import OpenAI from 'openai';
import type { ChatModel, ChatTurn } from './model';

export interface OpenAIModelOptions {
  apiKey: string;
  baseURL?: string;
  model: string;
  /** Retries the SDK makes on 429, 5xx and connection errors before failing. */
  maxRetries: number;
  /** Longest wait for the response to start, in ms. */
  timeoutMs: number;
}

/**
 * The provider adapter: the one file that imports `openai`. Chat Completions streaming
 * (`chat.completions.create({ stream: true })`) is what every OpenAI-compatible server speaks:
 * OpenAI, Ollama, vLLM, llama.cpp.
 */
export class OpenAIChatModel implements ChatModel {
  private readonly client: OpenAI;

  constructor(private readonly options: OpenAIModelOptions) {
    this.client = new OpenAI({
      apiKey: options.apiKey,
      baseURL: options.baseURL,
      maxRetries: options.maxRetries,
      timeout: options.timeoutMs,
    });
  }

  async *stream(turns: ChatTurn[], signal: AbortSignal, started?: () => void): AsyncIterable<string> {
    const stream = await this.client.chat.completions.create(
      { model: this.options.model, messages: turns, stream: true },
      { signal },
    );
    started?.();
    let finished = false;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.finish_reason) finished = true;
      const text = choice?.delta?.content;
      if (text) yield text;
    }
    // A stream ended without saying why (a proxy or the provider closed it mid-answer) is cut short, not complete.
    if (!finished && !signal.aborted) throw new UnfinishedAnswerError();
  }

  describeFailure(err: unknown): string {
    if (err instanceof OpenAI.RateLimitError) return 'The model provider is rate limiting requests (HTTP 429); try again later';
    if (err instanceof OpenAI.AuthenticationError) return 'The model provider rejected the API key (HTTP 401)';
    if (err instanceof OpenAI.NotFoundError) return `The model provider does not know the model "${this.options.model}" (HTTP 404)`;
    if (err instanceof OpenAI.APIConnectionTimeoutError) return 'The model provider did not answer in time';
    if (err instanceof OpenAI.APIConnectionError) return 'The model provider could not be reached';
    if (err instanceof OpenAI.APIError) {
      return err.status ? `The model provider failed (HTTP ${err.status})` : 'The model provider reported an error mid-reply';
    }
    if (err instanceof SyntaxError) return 'The model provider sent a response that could not be read';
    if (err instanceof UnfinishedAnswerError) return 'The model provider ended its answer before finishing it';
    if (isCutOff(err)) return 'The connection to the model provider was lost mid-reply';
    return 'The assistant failed unexpectedly';
  }
}

/** The answer's stream ended without a finish reason. */
class UnfinishedAnswerError extends Error {
  constructor() {
    super('the stream ended without a finish_reason');
  }
}

/**
 * A response body cut off by the network: fetch (undici) fails it with a `TypeError: terminated`
 * whose cause is the socket's error. Read by shape: Node's fetch makes its errors in its own realm.
 */
function isCutOff(err: unknown): boolean {
  const { name, message, cause } = (err ?? {}) as { name?: string; message?: string; cause?: { code?: string } };
  return (name === 'TypeError' && message === 'terminated') || cause?.code === 'ECONNRESET' || cause?.code === 'UND_ERR_SOCKET';
}
