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
