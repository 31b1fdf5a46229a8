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

  async *stream(turns: ChatTurn[], signal: AbortSignal): AsyncIterable<string> {
    const stream = await this.client.chat.completions.create(
      { model: this.options.model, messages: turns, stream: true },
      { signal },
    );
    for await (const chunk of stream) {
      const text = chunk.choices[0]?.delta?.content;
      if (text) yield text;
    }
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
    return 'The assistant failed unexpectedly';
  }
}
