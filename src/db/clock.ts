import type { DataSource } from 'typeorm';
import type { Logger } from '../logger';

/** How often the database's clock is read again (its host's clock may be stepped). */
const SAMPLE_EVERY_MS = 30_000;

/** How many recent readings the offset is taken from (the one with the shortest round trip): a stepped clock is followed within three readings. */
const KEEP_SAMPLES = 3;

interface Sample {
  offsetMs: number;
  roundTripMs: number;
}

/**
 * This process's view of the database server's clock, for deadlines PostgreSQL itself checks
 * (`deadline`): the offset of its clock from this one, read now and then by one statement and
 * taken from the reading with the shortest round trip (so off by at most half of it). Until a
 * first reading there is no deadline.
 */
export class DatabaseClock {
  private samples: Sample[] = [];
  /** The offset of the reading with the shortest round trip among `samples` (ms), once there is one. */
  private offsetMs?: number;
  private timer?: ReturnType<typeof setInterval>;
  private sampling?: Promise<void>;

  constructor(
    private readonly dataSource: DataSource,
    private readonly log: Logger,
  ) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), SAMPLE_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * The moment `inMs` from now on the database server's clock (an ISO string, for a `timestamptz`
   * parameter), or null before the clock was first read.
   */
  deadline(inMs: number): string | null {
    return this.offsetMs === undefined ? null : new Date(Date.now() + this.offsetMs + inMs).toISOString();
  }

  /** Reads the database's clock once (at most one reading at a time); never throws. */
  sample(): Promise<void> {
    this.sampling ??= this.read().finally(() => (this.sampling = undefined));
    return this.sampling;
  }

  private async read(): Promise<void> {
    try {
      const before = Date.now();
      const [row] = (await this.dataSource.query(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`)) as Array<{ ms: number }>;
      const after = Date.now();
      this.samples.push({ offsetMs: Number(row.ms) - (before + after) / 2, roundTripMs: after - before });
      if (this.samples.length > KEEP_SAMPLES) this.samples.shift();
      this.offsetMs = this.samples.reduce((best, s) => (s.roundTripMs < best.roundTripMs ? s : best)).offsetMs;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'could not read the database clock; trying again later');
    }
  }
}
