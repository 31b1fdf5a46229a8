// Throwaway PostgreSQL and Redis servers for tests, started from the binaries on PATH.
// Plain CommonJS so that jest's global setup and the TypeScript tests can both use it.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

/** A free TCP port on loopback (bind port 0 first: random picks collide with ephemeral ports). */
function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function findPgBin() {
  const candidates = [];
  if (process.env.PG_BIN) candidates.push(process.env.PG_BIN);
  try {
    const base = '/usr/lib/postgresql';
    for (const v of fs.readdirSync(base).sort((a, b) => Number(b) - Number(a))) candidates.push(path.join(base, v, 'bin'));
  } catch {
    // not the Debian layout
  }
  for (const dir of candidates) if (fs.existsSync(path.join(dir, 'initdb'))) return dir;
  try {
    return path.dirname(execFileSync('which', ['initdb']).toString().trim());
  } catch {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl) were not found: install them (Debian: apt-get install postgresql) ' +
        'or set TEST_DATABASE_URL to an existing server',
    );
  }
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Runs a PostgreSQL binary, as the `postgres` OS user when we are root (initdb refuses root). */
function pgRun(bin, args, opts = {}) {
  const cmd = isRoot() ? 'runuser' : bin;
  const fullArgs = isRoot() ? ['-u', 'postgres', '--', bin, ...args] : args;
  return execFileSync(cmd, fullArgs, { stdio: 'pipe', ...opts });
}

/**
 * Starts a PostgreSQL server in a temporary directory on a free port with fsync off, and creates
 * the `chat` database. Returns its URL and `stop()`/`start()`/`destroy()` (stop keeps the data).
 */
async function startPostgres() {
  const bin = findPgBin();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chat-pg-'));
  fs.chmodSync(dir, 0o755);
  if (isRoot()) execFileSync('chown', ['postgres:postgres', dir]);
  const port = await freePort();
  const data = path.join(dir, 'data');
  pgRun(path.join(bin, 'initdb'), ['-D', data, '-U', 'app', '--auth=trust', '-E', 'UTF8', '--no-locale']);
  const pgCtl = (...args) => pgRun(path.join(bin, 'pg_ctl'), ['-D', data, ...args]);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300`;
  const start = () => pgCtl('-l', path.join(dir, 'log'), '-w', '-o', options, 'start');
  const stop = (mode = 'fast') => pgCtl('-m', mode, '-w', 'stop');
  start();
  execFileSync(isRoot() ? 'runuser' : path.join(bin, 'createdb'), [
    ...(isRoot() ? ['-u', 'postgres', '--', path.join(bin, 'createdb')] : []),
    '-h', '127.0.0.1', '-p', String(port), '-U', 'app', 'chat',
  ]);
  return {
    url: `postgresql://app@127.0.0.1:${port}/chat`,
    port,
    start,
    stop,
    destroy() {
      try {
        stop('immediate');
      } catch {
        // already stopped
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Starts `redis-server` on a free port (no persistence). Returns its URL, `stop()` and `start()` (same port). */
async function startRedis() {
  try {
    execFileSync('which', ['redis-server'], { stdio: 'pipe' });
  } catch {
    throw new Error('redis-server was not found: install it (Debian: apt-get install redis-server) or set TEST_REDIS_URL');
  }
  const port = await freePort();
  let child;
  const start = () =>
    new Promise((resolve, reject) => {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      const timer = setTimeout(() => reject(new Error(`redis-server did not start: ${out}`)), 10000);
      child.stdout.on('data', (chunk) => {
        out += chunk;
        if (out.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited (${code}): ${out}`));
      });
    });
  const stop = () =>
    new Promise((resolve) => {
      if (!child || child.exitCode !== null || child.signalCode !== null) return resolve(); // not running (exited, or killed)
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    });
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, start, stop, destroy: stop };
}

module.exports = { freePort, startPostgres, startRedis };
