import { decodeBody, now, remember, type LoadResult } from './protocol';

/**
 * What one load process counts over its subscribers: for each measured message of the current
 * rung how many of them got it (each at most once), every delivery's latency, seq order per
 * subscriber, and when every subscriber has seen a warm-up message (so it is known to be
 * subscribed). `begin(rung)` starts a rung from zero on the same connections; a message of
 * another rung (a late one) is not counted.
 */
export class Tally {
  delivered = 0;
  private perIndex = new Uint32Array(4096);
  private latencies = new Float64Array(1 << 16);
  private latencyCount = 0;
  private outOfOrder = 0;
  private dropped = 0;
  private errorResults = 0;
  private readonly errors: string[] = [];
  private lastReceipt = 0;
  private warmSubscribers = 0;
  /** The rung being counted. */
  rung = 0;

  constructor(private readonly subscribers: number, private readonly onAllWarm: () => void) {}

  /** The message handler of one more subscriber. */
  subscriber(): (seq: number, text: string) => void {
    let lastSeq = 0;
    let warm = false;
    let got = new Set<number>();
    let gotRung = this.rung;
    return (seq, text) => {
      const receipt = now();
      if (seq <= lastSeq) this.outOfOrder++;
      lastSeq = Math.max(lastSeq, seq);
      const body = decodeBody(text);
      if (!body) return;
      if (body.k === 'w') {
        if (!warm && (warm = true) && ++this.warmSubscribers === this.subscribers) this.onAllWarm();
        return;
      }
      if ((body.r ?? 0) !== this.rung) return;
      if (gotRung !== this.rung) {
        gotRung = this.rung;
        got = new Set();
      }
      if (got.has(body.i)) return;
      got.add(body.i);
      this.count(body.i, receipt - body.t, receipt);
    };
  }

  /** Starts counting `rung` from zero (the per-subscriber order check goes on across rungs). */
  begin(rung: number): void {
    this.rung = rung;
    this.delivered = 0;
    this.perIndex = new Uint32Array(4096);
    this.latencies = new Float64Array(1 << 16);
    this.latencyCount = 0;
    this.lastReceipt = 0;
  }

  dropOne(reason: string): void {
    this.dropped++;
    remember(this.errors, reason);
  }

  errorResult(message: string): void {
    this.errorResults++;
    remember(this.errors, message);
  }

  result(): LoadResult {
    return {
      connections: this.subscribers,
      perIndex: this.perIndex,
      latencies: this.latencies.slice(0, this.latencyCount),
      outOfOrder: this.outOfOrder,
      dropped: this.dropped,
      errorResults: this.errorResults,
      errors: this.errors,
      lastReceipt: this.lastReceipt,
    };
  }

  private count(index: number, latency: number, receipt: number): void {
    if (index >= this.perIndex.length) this.perIndex = grow(this.perIndex, index + 1);
    this.perIndex[index]++;
    if (this.latencyCount === this.latencies.length) this.latencies = grow(this.latencies, this.latencyCount + 1);
    this.latencies[this.latencyCount++] = latency;
    this.delivered++;
    this.lastReceipt = Math.max(this.lastReceipt, receipt);
  }
}

function grow<T extends Uint32Array | Float64Array>(array: T, atLeast: number): T {
  const bigger = new (array.constructor as new (n: number) => T)(Math.max(atLeast, array.length * 2));
  bigger.set(array);
  return bigger;
}
