import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { createPgConfig } from '@electric-sql/pglite/node-postgres';
import type { Logger } from '../logger';

/** The embedded PGlite database, exposed as a node-postgres pool configuration for TypeORM. */
export interface EmbeddedDatabase {
  poolConfig: Record<string, unknown>;
  close(): Promise<void>;
}

/** Raised when another live process holds the data directory. */
export class DataDirLockedError extends Error {}

/**
 * Opens PGlite in `<dataDir>/pglite` behind an exclusive lock file: two processes on one PGlite
 * directory corrupt it, so a second one is refused with `DataDirLockedError`. A lock left by a
 * process that is gone is taken over.
 */
export async function openEmbedded(dataDir: string, log: Logger): Promise<EmbeddedDatabase> {
  mkdirSync(dataDir, { recursive: true });
  const releaseLock = acquireLock(path.join(dataDir, 'pglite.lock'));
  try {
    log.info({ dataDir }, 'opening the embedded database (PGlite)');
    const pglite = await PGlite.create(path.join(dataDir, 'pglite'));
    return {
      // One connection: PGlite is a single session, and the adapter serializes on it.
      poolConfig: { ...createPgConfig(pglite), max: 1, connectionTimeoutMillis: 30_000 },
      async close() {
        await pglite.close();
        releaseLock();
      },
    };
  } catch (err) {
    releaseLock();
    throw err;
  }
}

/** Lock files this process holds: a second open in the same process must be refused too. */
const held = new Set<string>();

/** How often the holder of a lock renews it (its file's modification time). */
export const LOCK_RENEW_MS = 5000;
/**
 * A lock renewed longer ago than this is stale, where its holder's liveness cannot be asked: a
 * holder on another host (a container sharing the directory), or one under this process's own id
 * (the same id in another process namespace: two containers' first processes are both 1).
 */
export const LOCK_STALE_MS = 15_000;

/**
 * Locks `file` for this process ("<pid> <host>", renewed every `LOCK_RENEW_MS`); returns its
 * release. A lock held elsewhere is refused (DataDirLockedError): on this host by another live
 * process; otherwise while it was renewed within `LOCK_STALE_MS`. A stale one is taken over.
 */
function acquireLock(file: string): () => void {
  if (held.has(file)) {
    throw new DataDirLockedError(`The data directory ${path.dirname(file)} is already open in this process`);
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid} ${hostname()}`);
      closeSync(fd);
      held.add(file);
      const renew = setInterval(() => {
        const now = new Date();
        try {
          utimesSync(file, now, now);
        } catch {
          // gone (the directory removed under it): nothing to renew
        }
      }, LOCK_RENEW_MS);
      renew.unref();
      return () => {
        clearInterval(renew);
        if (!held.delete(file)) return;
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // "<pid> <host>" (a file of older versions: "<pid>", this host's).
      const [pid, host = hostname()] = readFileSync(file, 'utf8').trim().split(/\s+/);
      const holder = Number(pid);
      const where = host === hostname() ? `process ${holder}` : `process ${holder} on host ${host}`;
      if (host === hostname() && holder !== process.pid) {
        if (holder && isAlive(holder)) {
          throw new DataDirLockedError(`The data directory ${path.dirname(file)} is in use by ${where}; stop it or set DATA_DIR to another directory`);
        }
      } else {
        const renewedMs = Date.now() - (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0); // gone meanwhile: free
        if (renewedMs < LOCK_STALE_MS) {
          throw new DataDirLockedError(
            `The data directory ${path.dirname(file)} is in use by ${where} (its lock renewed ${Math.round(renewedMs / 1000)} s ago); ` +
              `stop it or set DATA_DIR to another directory (a lock not renewed for ${LOCK_STALE_MS / 1000} s is taken over)`,
          );
        }
      }
      rmSync(file, { force: true }); // stale: its process is gone, or its lock was not renewed
    }
  }
  throw new DataDirLockedError(`Could not lock ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A process killed and not yet reaped by its parent (a shell that has not waited for it) still
  // answers signal 0: on Linux its state says it is gone ("Z", a zombie; "X", dead).
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8'); // "<pid> (<name>) <state> …"
    const state = stat[stat.lastIndexOf(')') + 2];
    return state !== 'Z' && state !== 'X';
  } catch {
    return true; // no /proc (not Linux), or it ended just now: as signal 0 said
  }
}
