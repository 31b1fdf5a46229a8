/**
 * The growing text of one streaming reply. Each piece is saved before it is published as a delta,
 * so a client that reads the reply from history (`body`, `deltaCount`) and then takes the deltas
 * from `deltaCount` on never misses one. Pieces that arrive while a save runs are saved together
 * by the next one; while the database is unreachable saving retries until `signal` aborts.
 */
export class ReplyText {
  /** Every piece received so far, joined. */
  text = '';
  /** How many pieces were received. */
  count = 0;
  private saved = '';
  private savedPieces = 0;
  private pending: string[] = [];
  private flushing?: Promise<void>;

  constructor(
    private readonly save: (body: string, deltaCount: number) => Promise<boolean>,
    private readonly publish: (index: number, text: string) => Promise<void>,
    /** Called when a save finds the reply no longer STREAMING (cancelled elsewhere). */
    private readonly onGone: () => void,
    private readonly signal: AbortSignal,
    private readonly retryMs = 500,
  ) {}

  /** The text saved and published as deltas so far. */
  get savedText(): string {
    return this.saved;
  }

  /** How many pieces are saved and published. */
  get savedCount(): number {
    return this.savedPieces;
  }

  push(piece: string): void {
    this.text += piece;
    this.count++;
    this.pending.push(piece);
    this.flushing ??= this.flush().finally(() => (this.flushing = undefined));
  }

  /** Resolves when every piece received so far was saved and published (or saving gave up). */
  async settle(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  /** Saves again what is saved, proving the reply alive (a heartbeat while the model is silent). */
  async touch(): Promise<void> {
    if (!this.flushing && !(await this.save(this.saved, this.savedPieces))) this.onGone();
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      const body = this.saved + batch.join('');
      let alive: boolean;
      try {
        alive = await this.save(body, this.savedPieces + batch.length);
      } catch {
        if (this.signal.aborted) return; // the final write carries the whole text
        this.pending.unshift(...batch);
        await new Promise((resolve) => setTimeout(resolve, this.retryMs));
        continue;
      }
      if (!alive) return this.onGone();
      for (const [i, piece] of batch.entries()) await this.publish(this.savedPieces + i, piece);
      this.saved = body;
      this.savedPieces += batch.length;
    }
  }
}
