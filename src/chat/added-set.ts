/** How many early seqs a cursor spells out; past that it keeps only the watermark (a few messages may then come again as added). */
const MAX_EARLY_IN_CURSOR = 100;

/**
 * Which messages (by seq) a stream has carried as `added`: every seq up to `watermark`, and the
 * few above it that arrived early (a message that changed again before a gap was filled arrives
 * at its later change). Decides whether a change is a message's first appearance, and travels in
 * event cursors (`snapshot`), so a client resuming from one gets as added exactly what it lacks.
 */
export class AddedSet {
  constructor(
    private watermark: number,
    private readonly above = new Set<number>(),
  ) {}

  /** `snapshot()` of the current state, until the next change. */
  private text?: string;

  /** Marks `seq` as carried; true when it already was. */
  mark(seq: number): boolean {
    if (seq <= this.watermark || this.above.has(seq)) return true;
    this.text = undefined;
    this.above.add(seq);
    while (this.above.delete(this.watermark + 1)) this.watermark++;
    return false;
  }

  /** Every seq up to which all were carried. */
  get upTo(): number {
    return this.watermark;
  }

  /** Whether both sets hold the same seqs. */
  equals(other: AddedSet): boolean {
    return this.watermark === other.watermark && this.above.size === other.above.size && [...this.above].every((seq) => other.above.has(seq));
  }

  clone(): AddedSet {
    return new AddedSet(this.watermark, new Set(this.above));
  }

  /** The set as text for a cursor: `12`, or `12.15.16` with the early seqs. */
  snapshot(): string {
    // Asked for once per delivered event by every feed: made once per state of the set.
    if (this.text !== undefined) return this.text;
    this.text =
      this.above.size === 0 || this.above.size > MAX_EARLY_IN_CURSOR
        ? String(this.watermark)
        : [this.watermark, ...[...this.above].sort((a, b) => a - b)].join('.');
    return this.text;
  }

  /** A set from `snapshot()` text; undefined when it is not one. */
  static parse(text: string): AddedSet | undefined {
    const parts = text.split('.');
    if (parts.length > MAX_EARLY_IN_CURSOR + 1 || !parts.every((p) => /^\d{1,10}$/.test(p) && Number(p) <= 2 ** 31 - 1)) return undefined;
    const [watermark, ...above] = parts.map(Number);
    return new AddedSet(watermark, new Set(above.filter((seq) => seq > watermark)));
  }
}
