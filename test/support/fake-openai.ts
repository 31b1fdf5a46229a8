import http from 'node:http';

/** One scripted answer of the fake model. */
export type Script =
  | { kind: 'stream'; chunks: string[]; delayMs?: number }
  | { kind: 'error'; status: number; times?: number; then?: Script; retryAfterMs?: number }
  | { kind: 'stall'; chunks: string[] }
  /** Sends no headers at all, ever. */
  | { kind: 'silent' }
  /** Ends the response cleanly after the chunks, without a finish reason or `[DONE]` (a proxy that cut it). */
  | { kind: 'cut'; chunks: string[] }
  /** Resets the connection after the chunks. */
  | { kind: 'reset'; chunks: string[] }
  | { kind: 'midstream-error'; chunks: string[] }
  | { kind: 'malformed'; chunks: string[] };

/** A request the fake received. */
export interface ReceivedRequest {
  headers: http.IncomingHttpHeaders;
  body: { model: string; stream: boolean; messages: Array<{ role: string; content: string }> };
}

/**
 * A local OpenAI-compatible server (`POST /v1/chat/completions`, streaming SSE with a blank line
 * between events) for testing through the real `openai` client. The answer is chosen by `pick`
 * from the request (by default: the script whose key appears in the last message).
 */
export class FakeOpenAI {
  readonly requests: ReceivedRequest[] = [];
  private readonly server: http.Server;
  private readonly sockets = new Set<import('node:net').Socket>();
  private readonly errorsSent = new Map<string, number>();
  url = '';

  constructor(private readonly scripts: Record<string, Script>, private readonly fallback: Script = { kind: 'stream', chunks: ['Hello', ', ', 'world', '!'] }) {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/v1`;
    return this.url;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Requests whose last message contains `text`. */
  requestsFor(text: string): ReceivedRequest[] {
    return this.requests.filter((r) => r.body.messages.at(-1)?.content.includes(text));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const body = JSON.parse(raw);
    this.requests.push({ headers: req.headers, body });
    const last: string = body.messages.at(-1)?.content ?? '';
    const key = Object.keys(this.scripts).find((k) => last.includes(k));
    await this.play(key ?? '', key ? this.scripts[key] : this.fallback, res);
  }

  private async play(key: string, script: Script, res: http.ServerResponse): Promise<void> {
    if (script.kind === 'error') {
      const sent = this.errorsSent.get(key) ?? 0;
      if (script.times === undefined || sent < script.times) {
        this.errorsSent.set(key, sent + 1);
        const retryAfterMs = script.retryAfterMs ?? 10;
        res.writeHead(script.status, { 'content-type': 'application/json', 'retry-after-ms': String(retryAfterMs), 'retry-after': String(Math.ceil(retryAfterMs / 1000)) });
        res.end(JSON.stringify({ error: { message: `scripted ${script.status}`, type: 'server_error' } }));
        return;
      }
      return this.play(key, script.then ?? this.fallback, res);
    }
    if (script.kind === 'silent') return; // the connection stays open, unanswered
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const event = (content: string | null, finish: string | null = null) =>
      `data: ${JSON.stringify({
        id: 'chatcmpl-test',
        object: 'chat.completion.chunk',
        created: Math.floor(Date.now() / 1000),
        model: 'fake',
        choices: [{ index: 0, delta: content === null ? {} : { content }, finish_reason: finish }],
      })}\n\n`;
    for (const chunk of script.chunks) {
      if (res.destroyed) return;
      res.write(event(chunk));
      if (script.kind === 'stream' && script.delayMs) await new Promise((r) => setTimeout(r, script.delayMs));
    }
    if (script.kind === 'stall') return; // keep the connection open, send nothing more
    if (script.kind === 'cut') return void res.end();
    if (script.kind === 'reset') return void setTimeout(() => res.socket?.destroy(), 20); // after the chunks have gone out
    if (script.kind === 'midstream-error') {
      res.end(`data: ${JSON.stringify({ error: { message: 'model crashed', type: 'server_error' } })}\n\n`);
      return;
    }
    if (script.kind === 'malformed') {
      res.end('data: {not json\n\n');
      return;
    }
    res.write(event(null, 'stop'));
    res.end('data: [DONE]\n\n');
  }
}
