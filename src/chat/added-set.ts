/**
 * How many runs of early seqs a cursor spells out; past that it keeps only the watermark (some
 * messages may then come again as added). A run is any number of consecutive seqs, so only a
 * set with more than this many holes above its watermark is cut short.
 */
const MAX_RUNS_IN_CURSOR = 100;
const MAX_SEQ = 2 ** 31 - 1;

/** Consecutive seqs `from` … `to`. */
interface Run {
  from: number;
  to: number;
}

/**
 * Which messages (by seq) a stream has carried as `added`: every seq up to `watermark`, and runs
 * of the ones above it that arrived early (a message that changed again before a gap was filled
 * arrives at its later change; a replay in change order carries every message created after an
 * old one that changed since before that one). Decides whether a change is a message's first
 * appearance, and travels in event cursors (`snapshot`), so a client resuming from one gets as
 * added exactly what it lacks (docs/guarantees.md, guarantee 8).
 */
export class AddedSet {
  /** Sorted, disjoint, never adjacent to each other nor to `watermark`. */
  private readonly runs: Run[];

  constructor(
    private watermark: number,
    runs: readonly Run[] = [],
  ) {
    this.runs = runs.map((run) => ({ ...run }));
  }

  /** `snapshot()` of the current state, until the next change. */
  private text?: string;

  /** Marks `seq` as carried; true when it already was. */
  mark(seq: number): boolean {
    if (seq <= this.watermark) return true;
    const { runs } = this;
    // The first run that ends at or after the seq before this one.
    let lo = 0;
    let hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid].to < seq - 1) lo = mid + 1;
      else hi = mid;
    }
    const run = runs[lo];
    if (run && run.from <= seq && seq <= run.to) return true;
    this.text = undefined;
    if (run && run.to === seq - 1) {
      run.to = seq;
      const next = runs[lo + 1];
      if (next && next.from === seq + 1) run.to = runs.splice(lo + 1, 1)[0].to;
    } else if (run && run.from === seq + 1) {
      run.from = seq;
    } else {
      runs.splice(lo, 0, { from: seq, to: seq });
    }
    if (runs[0].from === this.watermark + 1) this.watermark = runs.shift()!.to;
    return false;
  }

  /** Every seq up to which all were carried. */
  get upTo(): number {
    return this.watermark;
  }

  /** The highest seq held (the watermark when no run is above it). */
  get highest(): number {
    return this.runs.length ? this.runs[this.runs.length - 1].to : this.watermark;
  }

  /** Whether both sets hold the same seqs. */
  equals(other: AddedSet): boolean {
    return (
      this.watermark === other.watermark &&
      this.runs.length === other.runs.length &&
      this.runs.every((run, i) => run.from === other.runs[i].from && run.to === other.runs[i].to)
    );
  }

  clone(): AddedSet {
    return new AddedSet(this.watermark, this.runs);
  }

  /** The set as text for a cursor: `12`, or `12.15.17-40` with the early seqs and runs of them. */
  snapshot(): string {
    // Asked for once per delivered event by every feed: made once per state of the set.
    if (this.text !== undefined) return this.text;
    this.text =
      this.runs.length === 0 || this.runs.length > MAX_RUNS_IN_CURSOR
        ? String(this.watermark)
        : [this.watermark, ...this.runs.map(({ from, to }) => (from === to ? String(from) : `${from}-${to}`))].join('.');
    return this.text;
  }

  /** A set from `snapshot()` text; undefined when it is not one. */
  static parse(text: string): AddedSet | undefined {
    const parts = text.split('.');
    if (parts.length > MAX_RUNS_IN_CURSOR + 1) return undefined;
    const [first, ...rest] = parts;
    const watermark = seqOf(first);
    if (watermark === undefined) return undefined;
    const runs: Run[] = [];
    for (const part of rest) {
      const ends = part.split('-');
      if (ends.length > 2) return undefined;
      const from = seqOf(ends[0]);
      const to = seqOf(ends[ends.length - 1]);
      if (from === undefined || to === undefined || from > to) return undefined;
      if (to > watermark) runs.push({ from: Math.max(from, watermark + 1), to });
    }
    const set = new AddedSet(watermark);
    // Sorted, then merged where they touch (a hand-made cursor may overlap them).
    for (const run of runs.sort((a, b) => a.from - b.from)) set.add(run);
    return set;
  }

  /** Adds a run that starts at or after the start of every run held (`parse`). */
  private add(run: Run): void {
    const last = this.runs[this.runs.length - 1];
    const end = last ? last.to : this.watermark;
    if (run.from <= end + 1) {
      if (run.to <= end) return;
      if (last) last.to = run.to;
      else this.watermark = run.to;
      return;
    }
    this.runs.push({ ...run });
  }
}

/** A seq as a cursor spells it (1–10 digits, at most 2^31 − 1), or undefined. */
function seqOf(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const seq = Number(text);
  return seq <= MAX_SEQ ? seq : undefined;
}
