import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { onCleanup, track } from './cleanup';

/** The project root (the server runs from here). */
export const ROOT = path.resolve(__dirname, '..');

interface Throwaway {
  url: string;
  destroy(): unknown;
}
interface ServersModule {
  freePort(): Promise<number>;
  startPostgres(): Promise<Throwaway>;
  startRedis(): Promise<Throwaway>;
}
// The tests' helper (plain CommonJS, no type declarations): real servers from the binaries on PATH.
const servers = require('../test/support/servers.js') as ServersModule;

/** A free TCP port on loopback. */
export const freePort = (): Promise<number> => servers.freePort();

/** Starts a throwaway PostgreSQL and Redis (destroyed at cleanup); resolves to their URLs. */
export async function startBackingServices(): Promise<{ databaseUrl: string; redisUrl: string }> {
  const pg = await servers.startPostgres();
  onCleanup('postgresql', () => pg.destroy());
  const redis = await servers.startRedis();
  onCleanup('redis', () => redis.destroy());
  return { databaseUrl: pg.url, redisUrl: redis.url };
}

/** A server child process: its pid, what it logged, and how to stop it. */
export interface ServerProcess {
  pid: number;
  /** Log lines at warn level or above (pino JSON level >= 40) and any non-JSON output. */
  problems: string[];
  stop(): Promise<void>;
}

/**
 * Runs `node <script>` (`.ts` through `--import tsx`) from the project root with `env` added (and the node flags
 * in `BENCH_NODE_ARGS`, e.g. `--cpu-prof --cpu-prof-dir=./prof` to profile), and resolves once
 * `readyUrl` answers 200. Rejects with the process output if it exits or is not ready in time.
 */
export async function startServerProcess(
  name: string,
  script: string,
  env: Record<string, string>,
  readyUrl: string,
  timeoutMs = 60_000,
): Promise<ServerProcess> {
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const loader = script.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, [...nodeArgs, ...loader, script], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stop = track(name, child);
  const problems: string[] = [];
  const tail: string[] = [];
  const collect = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      tail.push(line);
      if (tail.length > 50) tail.shift();
      if (isProblem(line) && problems.length < 1000) problems.push(line.slice(0, 500));
    }
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  // `BENCH_SERVER_LOG=<file>`: the servers' output goes there too (e.g. with `BENCH_NODE_ARGS=--trace-gc`).
  if (process.env.BENCH_SERVER_LOG) {
    const log = createWriteStream(process.env.BENCH_SERVER_LOG, { flags: 'a' });
    child.stdout!.pipe(log, { end: false });
    child.stderr!.pipe(log, { end: false });
  }

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${name} exited before it was ready:\n${tail.join('\n')}`);
    }
    if (await answers200(readyUrl)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`${name} not ready after ${timeoutMs} ms:\n${tail.join('\n')}`);
    }
    await sleep(100);
  }
  return { pid: child.pid!, problems, stop };
}

function isProblem(line: string): boolean {
  try {
    return (JSON.parse(line) as { level?: number }).level! >= 40;
  } catch {
    return true; // not pino: a crash, a warning from Node, ...
  }
}

async function answers200(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false;
  }
}

/** Resident set size of a process in MB, from `/proc/<pid>/status` (VmRSS). */
export function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) / 1024;
}

/**
 * The process's RSS once it has stopped falling (MB): what a server holds before the connections of
 * a measurement come. Right after ours' set-up (sign-ups: each argon2 hash takes 19 MiB) it may still
 * hold tens of MB that its allocators give back within seconds; read then, that memory, taken up
 * again by the connections, would go uncounted. Read every second until the last three readings
 * fell less than 0.5 MB in all, at most `maxMs`.
 */
export async function settledRssMb(pid: number, maxMs = 30_000): Promise<number> {
  const readings = [rssMb(pid)];
  for (const deadline = Date.now() + maxMs; Date.now() < deadline; ) {
    await sleep(1000);
    readings.push(rssMb(pid));
    if (readings.length > 3 && readings[readings.length - 4] - readings[readings.length - 1] < 0.5) break;
  }
  return readings[readings.length - 1];
}

/** CPU time a process has used so far in user space and in the kernel, in seconds, from `/proc/<pid>/stat`. */
export function cpuTimes(pid: number): { user: number; system: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is field 3 (state)
  const CLOCK_TICKS = 100; // getconf CLK_TCK on Linux x86-64
  return { user: Number(fields[11]) / CLOCK_TICKS, system: Number(fields[12]) / CLOCK_TICKS };
}

/**
 * Now on the monotonic clock, in µs: the clock V8 stamps a CPU profile's `startTime` and samples
 * with (both read CLOCK_MONOTONIC on Linux), so a window taken here selects samples of a profile.
 */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n);

/** CPU time (user + system) a process has used so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const { user, system } = cpuTimes(pid);
  return user + system;
}

/** Busy and total CPU jiffies of the whole machine so far, from `/proc/stat`. */
export function machineCpu(): { busy: number; total: number } {
  const [, ...values] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/);
  const jiffies = values.map(Number);
  const total = jiffies.reduce((a, b) => a + b, 0);
  return { busy: total - jiffies[3] - (jiffies[4] ?? 0), total }; // idle and iowait are not busy
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
