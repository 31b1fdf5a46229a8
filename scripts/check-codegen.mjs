// Fails when src/graphql/generated.ts is not what `npm run codegen` makes from schema/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const committed = 'src/graphql/generated.ts';
const dir = mkdtempSync(path.join(os.tmpdir(), 'codegen-'));
const fresh = path.join(dir, 'generated.ts');
try {
  execFileSync('npx', ['graphql-codegen', '--config', 'codegen.ts', '--silent'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, CODEGEN_OUT: fresh },
  });
  if (readFileSync(fresh, 'utf8') !== readFileSync(committed, 'utf8')) {
    console.error(`${committed} is stale: run \`npm run codegen\` and commit the result.`);
    process.exit(1);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
