import type { ChildProcess } from 'node:child_process';

/**
 * Everything the benchmark must undo (child processes, throwaway servers), undone in reverse
 * order at the end of the run, on error, and on Ctrl-C / SIGTERM.
 */
const tasks: Array<{ name: string; run: () => unknown }> = [];
let running: Promise<void> | undefined;

/** Registers a cleanup task; the returned function unregisters it (after doing it yourself). */
export function onCleanup(name: string, run: () => unknown): () => void {
  const task = { name, run };
  tasks.push(task);
  return () => {
    const at = tasks.indexOf(task);
    if (at >= 0) tasks.splice(at, 1);
  };
}

/** Runs every registered task, newest first; errors are reported, never thrown. Idempotent. */
export function cleanupAll(): Promise<void> {
  running ??= (async () => {
    while (tasks.length > 0) {
      const task = tasks.pop()!;
      try {
        await task.run();
      } catch (err) {
        console.error(`[bench] cleanup of ${task.name} failed: ${(err as Error).message}`);
      }
    }
  })();
  return running;
}

let signalled = false;

/** True once SIGINT/SIGTERM arrived (errors after that are just children being stopped). */
export const interrupted = () => signalled;

/** On SIGINT/SIGTERM: clean up, then exit with 130/143. */
export function cleanupOnSignals(): void {
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      signalled = true;
      console.error(`[bench] ${signal}: stopping every child process and throwaway server`);
      void cleanupAll().finally(() => process.exit(code));
    });
  }
}

/**
 * How long a child may take to exit after SIGTERM. A server profiled with `--cpu-prof` writes its
 * profile as it exits, which takes longer than 5 s after a big run: killed earlier, it writes none.
 */
const GRACE_MS = /--cpu-prof\b/.test(process.env.BENCH_NODE_ARGS ?? '') ? 120_000 : 5000;

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process has exited. */
export function stopProcess(child: ChildProcess, graceMs = GRACE_MS): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Registers `child` for cleanup; returns a `stop()` that stops it now and unregisters it. */
export function track(name: string, child: ChildProcess): () => Promise<void> {
  const forget = onCleanup(name, () => stopProcess(child));
  return async () => {
    await stopProcess(child);
    forget();
  };
}
