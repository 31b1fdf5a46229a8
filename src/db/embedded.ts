import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
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
      return () => {
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
      if (host !== hostname()) {
        // Another machine or container sharing the directory (each its own process ids: as first
        // processes of their containers, two would both be 1): whether it runs cannot be told from here.
        throw new DataDirLockedError(
          `The data directory ${path.dirname(file)} is in use by process ${holder} on host ${host}; ` +
            `stop it, or delete ${file} if nothing uses the directory any more`,
        );
      }
      if (holder && holder !== process.pid && isAlive(holder)) {
        throw new DataDirLockedError(
          `The data directory ${path.dirname(file)} is in use by process ${holder}; ` +
            'stop it or set DATA_DIR to another directory',
        );
      }
      unlinkSync(file); // stale: its process is gone (or it is ours from before a restart as the same pid)
    }
  }
  throw new DataDirLockedError(`Could not lock ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
