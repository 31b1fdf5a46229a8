// Fails when anything `npm run codegen` makes from schema/ and client/operations/ differs from what is
// committed: the server's resolver types, the client kit's schema artifact and its typed documents.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const GENERATED = ['src/graphql/generated.ts', 'client/schema.graphql', 'client/src/cache-policies.ts', 'client/src/generated'];

/** Every file under the generated paths, relative to `root`. */
function filesUnder(root) {
  return GENERATED.flatMap((entry) => {
    const full = path.join(root, entry);
    if (!existsSync(full)) return [];
    return entry.endsWith('generated') ? readdirSync(full).map((f) => path.join(entry, f)) : [entry];
  }).sort();
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'codegen-'));
try {
  execFileSync('npx', ['graphql-codegen', '--config', 'codegen.ts', '--silent'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, CODEGEN_ROOT: dir },
  });
  const committed = filesUnder('.');
  const fresh = filesUnder(dir);
  const stale = [...new Set([...committed, ...fresh])].filter(
    (f) => !committed.includes(f) || !fresh.includes(f) || readFileSync(f, 'utf8') !== readFileSync(path.join(dir, f), 'utf8'),
  );
  if (stale.length) {
    console.error(`Generated files are stale (${stale.join(', ')}): run \`npm run codegen\` and commit the result.`);
    process.exit(1);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
