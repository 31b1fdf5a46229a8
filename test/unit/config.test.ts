import { mkdtempSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, generatedSecretFile, loadConfig } from '../../src/config';

const SECRET = 's'.repeat(32);
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'chat-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The ConfigError `loadConfig(env)` throws. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected loadConfig to throw');
}

describe('loadConfig', () => {
  it('fills in the documented defaults', () => {
    const config = loadConfig({ DATA_DIR: dir });
    expect(config).toMatchObject({
      port: 4000,
      host: '0.0.0.0',
      databaseUrl: undefined,
      dataDir: dir,
      redisUrl: undefined,
      jwtSecret: expect.any(String),
      jwtTtlSeconds: 900,
      refreshTokenTtlSeconds: 30 * 24 * 3600,
      sessionSweepMs: 15_000,
      openaiApiKey: undefined,
      openaiBaseUrl: undefined,
      openaiModel: 'gpt-4o-mini',
      introspection: true,
      logLevel: 'info',
      nodeEnv: 'development',
      healIntervalMs: 5000,
      shutdownTimeoutMs: 10_000,
      databaseTimeoutMs: 10_000,
      httpKeepAliveMs: 65_000,
    });
  });

  it('defaults DATA_DIR to ./.data, resolved to an absolute path', () => {
    expect(loadConfig({ JWT_SECRET: SECRET }).dataDir).toBe(path.resolve('./.data'));
  });

  it('reads every variable it knows', () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: 'postgresql://app@db:5432/chat',
      DATA_DIR: dir,
      REDIS_URL: 'redis://cache:6379',
      JWT_SECRET: SECRET,
      JWT_TTL_SECONDS: '3600',
      OPENAI_API_KEY: 'sk-test',
      OPENAI_BASE_URL: 'http://llm.local/v1',
      OPENAI_MODEL: 'tiny',
      INTROSPECTION: 'false',
      LOG_LEVEL: 'silent',
      NODE_ENV: 'production',
      HEAL_INTERVAL_MS: '250',
      SHUTDOWN_TIMEOUT_MS: '3000',
    });
    expect(config).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      databaseUrl: 'postgresql://app@db:5432/chat',
      dataDir: dir,
      redisUrl: 'redis://cache:6379',
      jwtSecret: SECRET,
      jwtTtlSeconds: 3600,
      openaiApiKey: 'sk-test',
      openaiBaseUrl: 'http://llm.local/v1',
      openaiModel: 'tiny',
      introspection: false,
      logLevel: 'silent',
      nodeEnv: 'production',
      healIntervalMs: 250,
      shutdownTimeoutMs: 3000,
    });
  });

  it.each([
    ['500', 500],
    ['600000', 600_000],
  ])('takes DATABASE_TIMEOUT_MS=%s at the edges of its range', (value, expected) => {
    expect(loadConfig({ DATA_DIR: dir, JWT_SECRET: SECRET, DATABASE_TIMEOUT_MS: value }).databaseTimeoutMs).toBe(expected);
  });

  it.each([
    ['2000', 2000],
    ['600000', 600_000],
  ])('takes HTTP_KEEP_ALIVE_MS=%s at the edges of its range', (value, expected) => {
    expect(loadConfig({ DATA_DIR: dir, JWT_SECRET: SECRET, HTTP_KEEP_ALIVE_MS: value }).httpKeepAliveMs).toBe(expected);
  });

  it('treats empty strings as unset', () => {
    const config = loadConfig({ DATA_DIR: dir, PORT: '', DATABASE_URL: '', REDIS_URL: '', JWT_SECRET: SECRET, INTROSPECTION: '' });
    expect(config).toMatchObject({ port: 4000, databaseUrl: undefined, redisUrl: undefined, introspection: true });
  });

  it.each([
    ['true', true],
    ['1', true],
    ['false', false],
    ['0', false],
  ])('reads INTROSPECTION=%s as %s', (value, expected) => {
    expect(loadConfig({ DATA_DIR: dir, JWT_SECRET: SECRET, INTROSPECTION: value }).introspection).toBe(expected);
  });

  it.each(['abc', '65536', '-1', '1.5', '80 80'])('refuses PORT=%s with an error naming PORT', (port) => {
    expect(configError({ DATA_DIR: dir, JWT_SECRET: SECRET, PORT: port }).message).toMatch(/\bPORT\b/);
  });

  it.each(['1e3', '0x3e8', ' 1000', '1000 ', ' ', '+1000', '1_000'])('refuses DATABASE_TIMEOUT_MS=%j: a number in other spellings is not taken', (value) => {
    expect(configError({ DATA_DIR: dir, JWT_SECRET: SECRET, DATABASE_TIMEOUT_MS: value }).message).toMatch(/DATABASE_TIMEOUT_MS.*whole number in decimal digits/);
  });

  it.each([
    ['DATABASE_URL', 'not a url'],
    ['REDIS_URL', 'not a url'],
    ['JWT_SECRET', 'short'],
    ['JWT_TTL_SECONDS', '0'],
    ['JWT_TTL_SECONDS', String(366 * 24 * 3600)],
    ['REFRESH_TOKEN_TTL_SECONDS', '59'],
    ['LOG_LEVEL', 'loud'],
    ['INTROSPECTION', 'yes'],
    ['HEAL_INTERVAL_MS', 'often'],
    ['DATABASE_TIMEOUT_MS', '499'],
    ['DATABASE_TIMEOUT_MS', '600001'],
    ['HTTP_KEEP_ALIVE_MS', '1999'],
    ['HTTP_KEEP_ALIVE_MS', '600001'],
  ])('refuses a bad %s with an error naming it', (name, value) => {
    expect(configError({ DATA_DIR: dir, JWT_SECRET: SECRET, [name]: value }).message).toContain(name);
  });

  it('requires JWT_SECRET in production with DATABASE_URL, and writes no secret then', () => {
    const error = configError({ DATA_DIR: dir, NODE_ENV: 'production', DATABASE_URL: 'postgresql://app@db/chat' });
    expect(error.message).toContain('JWT_SECRET');
    expect(existsSync(generatedSecretFile(dir))).toBe(false);
  });

  it('generates a secret in production without DATABASE_URL, and in development with it', () => {
    expect(loadConfig({ DATA_DIR: dir, NODE_ENV: 'production' }).jwtSecret.length).toBeGreaterThanOrEqual(32);
    expect(loadConfig({ DATA_DIR: dir, DATABASE_URL: 'postgresql://app@db/chat' }).jwtSecret.length).toBeGreaterThanOrEqual(32);
  });

  it('persists a generated secret in DATA_DIR, readable only by its owner, and reuses it', () => {
    const dataDir = path.join(dir, 'nested', 'data'); // created on demand
    const first = loadConfig({ DATA_DIR: dataDir });
    const file = generatedSecretFile(dataDir);
    expect(readFileSync(file, 'utf8')).toBe(first.jwtSecret);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(first.jwtSecret.length).toBeGreaterThanOrEqual(32);
    expect(loadConfig({ DATA_DIR: dataDir }).jwtSecret).toBe(first.jwtSecret);
  });

  it('generates a different secret for another DATA_DIR', () => {
    const other = mkdtempSync(path.join(os.tmpdir(), 'chat-config-'));
    try {
      expect(loadConfig({ DATA_DIR: other }).jwtSecret).not.toBe(loadConfig({ DATA_DIR: dir }).jwtSecret);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('reads an existing secret file, trimmed', () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(generatedSecretFile(dir), `${'k'.repeat(40)}\n`);
    expect(loadConfig({ DATA_DIR: dir }).jwtSecret).toBe('k'.repeat(40));
  });

  it('prefers JWT_SECRET and then writes no file', () => {
    expect(loadConfig({ DATA_DIR: dir, JWT_SECRET: SECRET }).jwtSecret).toBe(SECRET);
    expect(existsSync(generatedSecretFile(dir))).toBe(false);
  });

  it('does not read process.env when given an environment', () => {
    const saved = process.env.PORT;
    process.env.PORT = 'not-a-port';
    try {
      expect(loadConfig({ DATA_DIR: dir, JWT_SECRET: SECRET }).port).toBe(4000);
    } finally {
      if (saved === undefined) delete process.env.PORT;
      else process.env.PORT = saved;
    }
  });
});

describe('CORS_ORIGINS', () => {
  const base = { JWT_SECRET: 'x'.repeat(40), DATA_DIR: require('node:os').tmpdir() };
  it('defaults to any origin', () => {
    expect(loadConfig(base).corsOrigins).toBe('*');
  });
  it('reads a comma-separated list of origins', () => {
    expect(loadConfig({ ...base, CORS_ORIGINS: 'https://a.example.com, https://b.example.com' }).corsOrigins).toEqual([
      'https://a.example.com',
      'https://b.example.com',
    ]);
  });
  it('refuses something that is not an origin, naming the variable', () => {
    expect(() => loadConfig({ ...base, CORS_ORIGINS: 'not an origin' })).toThrow(/CORS_ORIGINS/);
  });
});

describe('limits and budgets', () => {
  const base = { JWT_SECRET: 'x'.repeat(40), DATA_DIR: require('node:os').tmpdir() };
  it('defaults to the values README.md documents', () => {
    expect(loadConfig(base)).toMatchObject({
      logInAttemptsPer15Min: 10,
      logInAttemptsPerUsernamePer15Min: 100,
      logInFailuresPerAddressPer15Min: 100,
      mutationsPerUserPer10s: 30,
      typingPerUserPer10s: 30,
      sendsPerUserPer10s: 10,
      sendsPerUserPerHour: 600,
      sendsPerRoomPer10s: 50,
      roomsPerAddressPerHour: 30,
      signUpsPerAddressPerHour: 20,
      wsPerUser: 20,
      wsPerAddress: 200,
      wsMaxBufferedBytes: 4 * 1024 * 1024,
      wsStallTimeoutMs: 10_000,
      trustProxy: false,
      operationLimits: { maxTokens: 1000, maxDepth: 10, maxAliases: 20, maxRootFields: 15, maxDirectives: 20, maxCost: 10_000 },
    });
  });
  it.each([
    ['true', true],
    ['false', false],
    ['2', 2],
    ['loopback, 10.0.0.0/8, 2001:db8::1', ['loopback', '10.0.0.0/8', '2001:db8::1']],
  ])('reads TRUST_PROXY=%s', (value, expected) => {
    expect(loadConfig({ ...base, TRUST_PROXY: value }).trustProxy).toEqual(expected);
  });
  it('refuses a TRUST_PROXY that is not an address, naming the variable', () => {
    expect(() => loadConfig({ ...base, TRUST_PROXY: 'my-proxy.example.com' })).toThrow(/TRUST_PROXY/);
    expect(() => loadConfig({ ...base, TRUST_PROXY: '10.0.0.0/33' })).toThrow(/TRUST_PROXY/); // a prefix longer than the address
    expect(() => loadConfig({ ...base, TRUST_PROXY: '2001:db8::/129' })).toThrow(/TRUST_PROXY/);
    expect(loadConfig({ ...base, TRUST_PROXY: '10.0.0.0/32, 2001:db8::/128' }).trustProxy).toEqual(['10.0.0.0/32', '2001:db8::/128']);
  });
  it.each([
    ['REDIS_URL', 'http://x'],
    ['REDIS_URL', 'postgres://localhost/chat'],
    ['DATABASE_URL', 'redis://localhost:6379'],
    ['DATABASE_URL', 'mysql://localhost/chat'],
  ])('refuses %s=%s, a URL of another kind, naming the variable', (name, value) => {
    expect(() => loadConfig({ ...base, [name]: value })).toThrow(new RegExp(name));
  });
  it('takes the URL schemes of Redis and PostgreSQL', () => {
    for (const redisUrl of ['redis://127.0.0.1:6379', 'rediss://cache.example.com:6380/2']) expect(loadConfig({ ...base, REDIS_URL: redisUrl }).redisUrl).toBe(redisUrl);
    for (const databaseUrl of ['postgres://u:p@db/chat', 'postgresql://db:5432/chat']) expect(loadConfig({ ...base, DATABASE_URL: databaseUrl, JWT_SECRET: 'x'.repeat(40) }).databaseUrl).toBe(databaseUrl);
  });
  it('refuses a budget of zero, naming the variable', () => {
    expect(() => loadConfig({ ...base, SENDS_PER_USER_PER_10S: '0' })).toThrow(/SENDS_PER_USER_PER_10S/);
    expect(() => loadConfig({ ...base, TYPING_PER_USER_PER_10S: '0' })).toThrow(/TYPING_PER_USER_PER_10S/);
    expect(loadConfig({ ...base, TYPING_PER_USER_PER_10S: '1' }).typingPerUserPer10s).toBe(1);
    expect(() => loadConfig({ ...base, READS_PER_USER_PER_10S: '0' })).toThrow(/READS_PER_USER_PER_10S/);
    expect(() => loadConfig({ ...base, READS_PER_USER_PER_10S: 'many' })).toThrow(/READS_PER_USER_PER_10S/);
    expect(loadConfig({ ...base, READS_PER_USER_PER_10S: '1' }).readsPerUserPer10s).toBe(1);
    expect(loadConfig(base).readsPerUserPer10s).toBe(100);
    expect(() => loadConfig({ ...base, WS_OPERATIONS_PER_SOCKET_PER_S: '0' })).toThrow(/WS_OPERATIONS_PER_SOCKET_PER_S/);
    expect(loadConfig({ ...base, WS_OPERATIONS_PER_SOCKET_PER_S: '1' }).wsOperationsPerSocketPerSecond).toBe(1);
    expect(loadConfig(base).wsOperationsPerSocketPerSecond).toBe(100);
  });
});
