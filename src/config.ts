import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import proxyAddr from 'proxy-addr';

/** Everything the server reads from its environment, validated once at start. */
export interface Config {
  /** HTTP and WebSocket port. Default 4000; 0 picks a free port (tests). */
  port: number;
  /** Bind address. Default `0.0.0.0`. */
  host: string;
  /** PostgreSQL connection string; unset means the embedded PGlite database in `dataDir`. */
  databaseUrl?: string;
  /** Directory for the embedded database and the generated development secret. Default `./.data`. */
  dataDir: string;
  /** Redis for pub/sub between instances; unset means in-memory pub/sub (one instance only). */
  redisUrl?: string;
  /** Token signing key (HS256). Generated once into `dataDir` when unset outside production. */
  jwtSecret: string;
  /** Access token lifetime in seconds. Default 900 (15 minutes); `refreshSession` renews it. */
  jwtTtlSeconds: number;
  /** Refresh token lifetime in seconds (each refresh starts a new one). Default 30 days. */
  refreshTokenTtlSeconds: number;
  /** How often open WebSockets' sessions are checked against the database, in ms. Default 15000. */
  sessionSweepMs: number;
  /** Key for the OpenAI-compatible endpoint; unset disables the assistant. */
  openaiApiKey?: string;
  /** Base URL of the OpenAI-compatible endpoint; unset uses the SDK's default. */
  openaiBaseUrl?: string;
  /** Chat model name. Default `gpt-4o-mini`. */
  openaiModel: string;
  /** Retries the SDK makes on 429, 5xx and connection errors. Default 2. */
  openaiMaxRetries: number;
  /** Longest wait for the model's response to start, in ms. Default 60000. */
  openaiTimeoutMs: number;
  /** A reply whose stream sends nothing for this long ends FAILED, in ms. Default 30000. */
  assistantStallTimeoutMs: number;
  /** How many characters of the thread the model sees (oldest trimmed first). Default 12000. */
  assistantContextChars: number;
  /** Replies one user may have streaming at once. Default 3. */
  assistantMaxStreamingPerUser: number;
  /** Asks one user may make per minute. Default 20. */
  assistantAsksPerMinute: number;
  /** Log-in attempts per username from one client address per 15 minutes (a success gives them back). Default 10. */
  logInAttemptsPer15Min: number;
  /** Log-in attempts per username from all addresses together per 15 minutes (a success gives them back). Default 100. */
  logInAttemptsPerUsernamePer15Min: number;
  /** Failed log-ins from one client address, whatever the usernames, per 15 minutes. Default 100. */
  logInFailuresPerAddressPer15Min: number;
  /** Mutations of any kind one user may make per 10 seconds (`setTyping` and `markRead` have their own budgets). Default 30. */
  mutationsPerUserPer10s: number;
  /** `setTyping` calls one user may make per 10 seconds that reach the typing store (a repeat within a second is free). Default 30. */
  typingPerUserPer10s: number;
  /** `markRead` calls one user may make per 10 seconds (their own budget: marking messages read as they arrive never holds up a send). Default 100. */
  readsPerUserPer10s: number;
  /** Messages one user may send per 10 seconds (the burst). Default 10. */
  sendsPerUserPer10s: number;
  /** Messages one user may send per hour (the sustained rate). Default 600. */
  sendsPerUserPerHour: number;
  /** Messages one room may take per 10 seconds, from all its members together. Default 50. */
  sendsPerRoomPer10s: number;
  /** Rooms one client address may create per hour. Default 30. */
  roomsPerAddressPerHour: number;
  /** Accounts one client address may create per hour. Default 20. */
  signUpsPerAddressPerHour: number;
  /** Open WebSockets per user on this instance. Default 20. */
  wsPerUser: number;
  /** Operations one WebSocket may start a second, counted over 3 s (bursts up to three seconds' worth); past that RATE_LIMITED. Default 100. */
  wsOperationsPerSocketPerSecond: number;
  /** Open WebSockets per client address on this instance. Default 200. */
  wsPerAddress: number;
  /** A WebSocket with more than this many bytes waiting to be sent is closed. Default 4 MiB. */
  wsMaxBufferedBytes: number;
  /** A WebSocket whose reader takes nothing for this long while data waits is closed, in ms. Default 10000. */
  wsStallTimeoutMs: number;
  /**
   * How long an HTTP connection may stay open with no request, in ms (Node closes it up to a
   * second later). Above the idle timeouts of clients and load balancers (Node's global agent 5 s,
   * undici 4 s, most balancers 60 s), so the client side closes an idle connection first: when the
   * server closes it, a request the client sends at that moment fails with a reset (Node's own
   * default, 5 s, reset sends of the bench's keep-alive client). At least 2000: a Node agent keeps a
   * connection a second less than the server announces (`Keep-Alive: timeout=<s>`), so below that
   * it reuses none. Default 65000.
   */
  httpKeepAliveMs: number;
  /**
   * Which proxies in front of this server to believe about the client address (X-Forwarded-For):
   * `false` (none: the socket's peer is the client), `true` (all), a number of hops, or a
   * comma-separated list of addresses, subnets or `loopback`/`linklocal`/`uniquelocal`. Default false.
   */
  trustProxy: boolean | number | string[];
  /** The limits every operation meets before it runs (`src/graphql/limits.ts`). */
  operationLimits: { maxTokens: number; maxDepth: number; maxAliases: number; maxRootFields: number; maxDirectives: number; maxCost: number };
  /** Serve introspection and GraphiQL. Default true in every `NODE_ENV`. */
  introspection: boolean;
  /**
   * `/readyz` answers 200 with the database up while pub/sub is down (it is reported in the body).
   * Default false: ready means the database and pub/sub both answer, as the contract says.
   */
  readyWithoutPubsub: boolean;
  /** pino level. Default `info`. */
  logLevel: string;
  /** Origins browsers may call the API from (CORS): `*` or a list. Default `*` (tokens, not cookies). */
  corsOrigins: '*' | string[];
  /**
   * This instance's identity, stable across its restarts: `INSTANCE_ID`, else host name and port
   * (random with port 0). A restarted instance fails the assistant replies its crashed run left.
   */
  instanceId: string;
  /** `production` or anything else. */
  nodeEnv: string;
  /**
   * How long a statement on PostgreSQL (the pool's and the pipelined connections') may run before
   * the database cancels it, in ms; one the database does not answer at all (frozen, or cut off
   * without a reset) is given up 2 s later.
   * Either way the caller gets SERVICE_UNAVAILABLE, never a hang. Default 10000.
   */
  databaseTimeoutMs: number;
  /** How often a room hub with subscribers compares its position with the database, in ms. Default 5000. */
  healIntervalMs: number;
  /** Longest a graceful shutdown may take before the process exits anyway, in ms. Default 10000. */
  shutdownTimeoutMs: number;
  /** Typing ends by itself this long after the last `setTyping(true)`, in ms. Default 5000. */
  typingTtlMs: number;
  /**
   * A user's presence held by an instance lapses this long after its last heartbeat (sent every
   * third of it), in ms: users of an instance that died go offline within about 1.3× this. Default 20000.
   */
  presenceTtlMs: number;
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
/** A whole number written in decimal digits (not `1e3`, `0x10` or blanks, which `Number` would take) within [min, max]. */
const int = (min: number, max: number) =>
  z.preprocess(
    (value) => (typeof value === 'string' && /^-?\d+$/.test(value) ? Number(value) : value),
    z.number({ invalid_type_error: 'Expected a whole number in decimal digits' }).int().min(min).max(max),
  );

/** A URL whose scheme `scheme` matches (`kind` names it in the refusal). */
const urlOf = (scheme: RegExp, kind: string) =>
  z
    .string()
    .url()
    .refine((v) => scheme.test(v), `must be ${kind}`);

const envSchema = z.object({
  PORT: int(0, 65535).default(4000),
  HOST: z.string().min(1).default('0.0.0.0'),
  DATABASE_URL: urlOf(/^postgres(ql)?:\/\//i, 'a postgres:// or postgresql:// URL').optional(),
  DATABASE_TIMEOUT_MS: int(500, 600_000).default(10_000),
  DATA_DIR: z.string().min(1).default('./.data'),
  REDIS_URL: urlOf(/^rediss?:\/\//i, 'a redis:// or rediss:// URL').optional(),
  JWT_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  JWT_TTL_SECONDS: int(1, 60 * 60 * 24 * 365).default(900),
  REFRESH_TOKEN_TTL_SECONDS: int(60, 60 * 60 * 24 * 365).default(60 * 60 * 24 * 30),
  SESSION_SWEEP_MS: int(100, 600_000).default(15_000),
  OPENAI_API_KEY: z.string().min(1).optional(),
  OPENAI_BASE_URL: z.string().url().optional(),
  OPENAI_MODEL: z.string().min(1).default('gpt-4o-mini'),
  OPENAI_MAX_RETRIES: int(0, 10).default(2),
  OPENAI_TIMEOUT_MS: int(1000, 600_000).default(60_000),
  ASSISTANT_STALL_TIMEOUT_MS: int(100, 600_000).default(30_000),
  ASSISTANT_CONTEXT_CHARS: int(100, 1_000_000).default(12_000),
  ASSISTANT_MAX_STREAMING_PER_USER: int(1, 100).default(3),
  ASSISTANT_ASKS_PER_MINUTE: int(1, 10_000).default(20),
  LOGIN_ATTEMPTS_PER_15_MIN: int(1, 10_000).default(10),
  LOGIN_ATTEMPTS_PER_USERNAME_PER_15_MIN: int(1, 1_000_000_000).default(100),
  LOGIN_FAILURES_PER_ADDRESS_PER_15_MIN: int(1, 1_000_000_000).default(100),
  MUTATIONS_PER_USER_PER_10S: int(1, 1_000_000_000).default(30),
  TYPING_PER_USER_PER_10S: int(1, 1_000_000_000).default(30),
  READS_PER_USER_PER_10S: int(1, 1_000_000_000).default(100),
  SENDS_PER_USER_PER_10S: int(1, 1_000_000_000).default(10),
  SENDS_PER_USER_PER_HOUR: int(1, 1_000_000_000).default(600),
  SENDS_PER_ROOM_PER_10S: int(1, 1_000_000_000).default(50),
  ROOMS_PER_ADDRESS_PER_HOUR: int(1, 1_000_000_000).default(30),
  SIGNUPS_PER_ADDRESS_PER_HOUR: int(1, 1_000_000_000).default(20),
  WS_PER_USER: int(1, 1_000_000_000).default(20),
  WS_OPERATIONS_PER_SOCKET_PER_S: int(1, 1_000_000_000).default(100),
  WS_PER_ADDRESS: int(1, 1_000_000_000).default(200),
  WS_MAX_BUFFERED_BYTES: int(1024, 1024 ** 3).default(4 * 1024 * 1024),
  WS_STALL_TIMEOUT_MS: int(100, 600_000).default(10_000),
  HTTP_KEEP_ALIVE_MS: int(2000, 600_000).default(65_000),
  TRUST_PROXY: z
    .string()
    .default('false')
    .transform((v): boolean | number | string[] => {
      const t = v.trim();
      if (t === 'true' || t === 'false') return t === 'true';
      if (/^\d+$/.test(t)) return Number(t);
      return t.split(',').map((a) => a.trim()).filter(Boolean);
    })
    .refine((v) => typeof v !== 'object' || isTrustList(v), 'must be true, false, a number of hops or a comma-separated list of addresses or subnets'),
  MAX_QUERY_TOKENS: int(100, 1_000_000).default(1000),
  MAX_QUERY_DEPTH: int(2, 1000).default(10),
  MAX_QUERY_ALIASES: int(0, 100_000).default(20),
  MAX_QUERY_ROOT_FIELDS: int(1, 100_000).default(15),
  MAX_QUERY_DIRECTIVES: int(0, 100_000).default(20),
  MAX_QUERY_COST: int(1, 100_000_000).default(10_000),
  INTROSPECTION: bool.default('true'),
  READY_WITHOUT_PUBSUB: bool.default('false'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: z.string().default('development'),
  INSTANCE_ID: z.string().min(1).max(200).optional(),
  CORS_ORIGINS: z
    .string()
    .default('*')
    .transform((v) => (v.trim() === '*' ? '*' : v.split(',').map((o) => o.trim()).filter(Boolean)))
    .pipe(z.union([z.literal('*'), z.array(z.string().url('must be * or a comma-separated list of origins')).min(1)])),
  HEAL_INTERVAL_MS: int(100, 600_000).default(5000),
  SHUTDOWN_TIMEOUT_MS: int(100, 600_000).default(10_000),
  TYPING_TTL_MS: int(500, 60_000).default(5000),
  PRESENCE_TTL_MS: int(300, 600_000).default(20_000),
});

/** A configuration problem that must stop the server; the message names the variable. */
export class ConfigError extends Error {}

/**
 * Reads and validates the environment. Empty strings count as unset. Throws `ConfigError` naming
 * the first bad variable. May create `DATA_DIR` and a generated secret file in it.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`Invalid ${issue.path.join('.')}: ${issue.message}`);
  }
  const e = parsed.data;
  if (!e.JWT_SECRET && e.NODE_ENV === 'production' && e.DATABASE_URL) {
    throw new ConfigError('JWT_SECRET is required when NODE_ENV=production and DATABASE_URL is set');
  }
  const dataDir = path.resolve(e.DATA_DIR);
  return {
    port: e.PORT,
    host: e.HOST,
    databaseUrl: e.DATABASE_URL,
    databaseTimeoutMs: e.DATABASE_TIMEOUT_MS,
    dataDir,
    redisUrl: e.REDIS_URL,
    jwtSecret: e.JWT_SECRET ?? readOrCreateSecret(dataDir),
    jwtTtlSeconds: e.JWT_TTL_SECONDS,
    refreshTokenTtlSeconds: e.REFRESH_TOKEN_TTL_SECONDS,
    sessionSweepMs: e.SESSION_SWEEP_MS,
    openaiApiKey: e.OPENAI_API_KEY,
    openaiBaseUrl: e.OPENAI_BASE_URL,
    openaiModel: e.OPENAI_MODEL,
    openaiMaxRetries: e.OPENAI_MAX_RETRIES,
    openaiTimeoutMs: e.OPENAI_TIMEOUT_MS,
    assistantStallTimeoutMs: e.ASSISTANT_STALL_TIMEOUT_MS,
    assistantContextChars: e.ASSISTANT_CONTEXT_CHARS,
    assistantMaxStreamingPerUser: e.ASSISTANT_MAX_STREAMING_PER_USER,
    assistantAsksPerMinute: e.ASSISTANT_ASKS_PER_MINUTE,
    logInAttemptsPer15Min: e.LOGIN_ATTEMPTS_PER_15_MIN,
    logInAttemptsPerUsernamePer15Min: e.LOGIN_ATTEMPTS_PER_USERNAME_PER_15_MIN,
    logInFailuresPerAddressPer15Min: e.LOGIN_FAILURES_PER_ADDRESS_PER_15_MIN,
    mutationsPerUserPer10s: e.MUTATIONS_PER_USER_PER_10S,
    typingPerUserPer10s: e.TYPING_PER_USER_PER_10S,
    readsPerUserPer10s: e.READS_PER_USER_PER_10S,
    sendsPerUserPer10s: e.SENDS_PER_USER_PER_10S,
    sendsPerUserPerHour: e.SENDS_PER_USER_PER_HOUR,
    sendsPerRoomPer10s: e.SENDS_PER_ROOM_PER_10S,
    roomsPerAddressPerHour: e.ROOMS_PER_ADDRESS_PER_HOUR,
    signUpsPerAddressPerHour: e.SIGNUPS_PER_ADDRESS_PER_HOUR,
    wsPerUser: e.WS_PER_USER,
    wsOperationsPerSocketPerSecond: e.WS_OPERATIONS_PER_SOCKET_PER_S,
    wsPerAddress: e.WS_PER_ADDRESS,
    wsMaxBufferedBytes: e.WS_MAX_BUFFERED_BYTES,
    wsStallTimeoutMs: e.WS_STALL_TIMEOUT_MS,
    httpKeepAliveMs: e.HTTP_KEEP_ALIVE_MS,
    trustProxy: e.TRUST_PROXY,
    operationLimits: {
      maxTokens: e.MAX_QUERY_TOKENS,
      maxDepth: e.MAX_QUERY_DEPTH,
      maxAliases: e.MAX_QUERY_ALIASES,
      maxRootFields: e.MAX_QUERY_ROOT_FIELDS,
      maxDirectives: e.MAX_QUERY_DIRECTIVES,
      maxCost: e.MAX_QUERY_COST,
    },
    introspection: e.INTROSPECTION,
    readyWithoutPubsub: e.READY_WITHOUT_PUBSUB,
    logLevel: e.LOG_LEVEL,
    corsOrigins: e.CORS_ORIGINS,
    instanceId: e.INSTANCE_ID ?? (e.PORT ? `${hostname()}:${e.PORT}` : randomUUID()),
    nodeEnv: e.NODE_ENV,
    healIntervalMs: e.HEAL_INTERVAL_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    typingTtlMs: e.TYPING_TTL_MS,
    presenceTtlMs: e.PRESENCE_TTL_MS,
  };
}

/** A TRUST_PROXY list: IP addresses, subnets (`10.0.0.0/8`) or proxy-addr's names, as proxy-addr reads them. */
function isTrustList(entries: string[]): boolean {
  try {
    proxyAddr.compile(entries);
    return entries.length > 0;
  } catch {
    return false; // not an address, a prefix too long for its address, a bad mask
  }
}

/** True when the secret came from the data directory rather than `JWT_SECRET` (worth a warning). */
export const generatedSecretFile = (dataDir: string) => path.join(dataDir, 'jwt-secret');

function readOrCreateSecret(dataDir: string): string {
  const file = generatedSecretFile(dataDir);
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    mkdirSync(dataDir, { recursive: true });
    const secret = randomBytes(48).toString('base64url');
    try {
      writeFileSync(file, secret, { mode: 0o600, flag: 'wx' });
      return secret;
    } catch {
      return readFileSync(file, 'utf8').trim(); // another process wrote it first
    }
  }
}
