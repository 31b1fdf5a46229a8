import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * What a database error carries that is someone's data: the statement's values (TypeORM's
 * `parameters`: a password hash, a refresh token's hash, a private room's name) and PostgreSQL's
 * account of the row it refused (`detail`: "Key (username)=(…)", `where`). Never logged; the
 * statement's text (with its placeholders), the code and the constraint are.
 */
const DATA_FIELDS = ['parameters', 'detail', 'where', 'internalQuery'];

/** pino's error serializer, without `DATA_FIELDS`, also on the driver's error that TypeORM wraps. */
function errorWithoutData(err: unknown): unknown {
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (typeof out !== 'object' || out === null) return out;
  for (const field of DATA_FIELDS) delete out[field];
  // A Redis reply's error names the command it answers, with its arguments (AUTH's is the password).
  const command = out.command as { name?: unknown } | undefined;
  if (command && typeof command === 'object') out.command = { name: command.name };
  const driver = out.driverError as Record<string, unknown> | undefined;
  if (driver && typeof driver === 'object') {
    const kept = Object.entries(driver).filter(([key]) => !DATA_FIELDS.includes(key) && key !== 'stack');
    out.driverError = { message: driver.message, ...Object.fromEntries(kept) };
  }
  return out;
}

/** Structured JSON logs on stdout (or `destination`) at the given level. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options = { level, base: undefined, timestamp: pino.stdTimeFunctions.isoTime, serializers: { err: errorWithoutData } };
  return destination ? pino(options, destination) : pino(options);
}

/** How often a warning that may repeat with every request or signal is logged at most. */
export const REPEATED_WARNING_MS = 1000;

/**
 * A warning that may repeat many times a second (a publish failing on every send while Redis is
 * down): the first of each `everyMs` is logged as it comes, the others of that window are counted
 * and told with the next one logged (`suppressed`: how many were left out before it).
 */
export function warnAtMostEvery(log: Logger, everyMs: number, msg: string): (fields: Record<string, unknown>) => void {
  let windowEnds = 0;
  let suppressed = 0;
  return (fields) => {
    const now = Date.now();
    if (now < windowEnds) return void suppressed++;
    windowEnds = now + everyMs;
    log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, msg);
    suppressed = 0;
  };
}
