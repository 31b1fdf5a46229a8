// The kit as an application installs it (client/README.md: `npm pack`, then the archive, beside its
// peer dependencies): README's snippet, word for word, must type-check in an ESM project (Vite's
// and Next's default: "type": "module", `bundler` resolution) and in a CommonJS one — the kit's
// types must be Apollo Client's own in each — and the kit must load in Node's ESM and CommonJS.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '../..');
const TSC = path.join(ROOT, 'node_modules/typescript/bin/tsc');
const PEERS = ['@apollo/client', 'graphql', 'graphql-ws', 'rxjs', 'ws', '@graphql-typed-document-node/core'];

let dir: string;

/** An application's folder: its package.json and tsconfig, README's snippet, the packed kit and the peers (the repository's, linked). */
function application(name: string, type: 'module' | 'commonjs', compilerOptions: Record<string, unknown>, archive: string): string {
  const app = path.join(dir, name);
  mkdirSync(path.join(app, 'src'), { recursive: true });
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name, private: true, type }));
  const options = { target: 'ES2022', lib: ['ES2022', 'DOM'], noEmit: true, strict: true, skipLibCheck: true, ...compilerOptions };
  writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: options, include: ['src'] }));
  const snippet = /```ts\n([\s\S]*?)```/.exec(readFileSync(path.join(ROOT, 'client/README.md'), 'utf8'))![1];
  writeFileSync(path.join(app, 'src/main.ts'), `declare function showLogin(reason: string): void;\n${snippet}export { client };\n`);
  const kit = path.join(app, 'node_modules/@chat-api/client');
  mkdirSync(kit, { recursive: true });
  execFileSync('tar', ['xzf', archive, '-C', kit, '--strip-components=1']);
  for (const peer of PEERS) {
    mkdirSync(path.dirname(path.join(app, 'node_modules', peer)), { recursive: true });
    symlinkSync(path.join(ROOT, 'node_modules', peer), path.join(app, 'node_modules', peer));
  }
  return app;
}

/** What `tsc` says of the application: '' when it type-checks. */
function typeCheck(app: string): string {
  try {
    execFileSync(process.execPath, [TSC, '-p', app], { encoding: 'utf8', stdio: 'pipe' });
    return '';
  } catch (err) {
    return String((err as { stdout?: string }).stdout).slice(0, 2000);
  }
}

/** Loads the kit in the application as Node would (`.mjs` or `.cjs`), makes a link and a client, and says what it got. */
function load(app: string, file: 'run.mjs' | 'run.cjs'): unknown {
  const imports =
    file === 'run.mjs'
      ? `import WebSocket from 'ws'; import { ApolloClient, ApolloLink, InMemoryCache } from '@apollo/client'; import { chatCacheConfig, createChatLink, RoomEventsDocument } from '@chat-api/client';`
      : `const WebSocket = require('ws'); const { ApolloClient, ApolloLink, InMemoryCache } = require('@apollo/client'); const { chatCacheConfig, createChatLink, RoomEventsDocument } = require('@chat-api/client');`;
  writeFileSync(
    path.join(app, file),
    `${imports}
const link = createChatLink({ httpUrl: 'http://127.0.0.1:9/graphql', wsUrl: 'ws://127.0.0.1:9/graphql', session: null, webSocketImpl: WebSocket });
const client = new ApolloClient({ link, cache: new InMemoryCache(chatCacheConfig) });
console.log(JSON.stringify({ link: link instanceof ApolloLink, client: client instanceof ApolloClient, documents: RoomEventsDocument.kind }));
link.dispose();`,
  );
  return JSON.parse(execFileSync(process.execPath, [file], { cwd: app, encoding: 'utf8', timeout: 20_000 }));
}

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'chat-kit-packaging-'));
  // The kit is built before the tests (`npm run typecheck`): pack what was built.
  execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: path.join(ROOT, 'client'), stdio: 'pipe' });
}, 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const archive = () => path.join(dir, `chat-api-client-${JSON.parse(readFileSync(path.join(ROOT, 'client/package.json'), 'utf8')).version}.tgz`);

it('type-checks README\'s snippet in an ESM project with bundler resolution (before: ChatLink not assignable to ApolloLink, CommonJS types against ESM ones), and loads in Node\'s ESM', () => {
  const app = application('esm-app', 'module', { module: 'ESNext', moduleResolution: 'bundler', isolatedModules: true, moduleDetection: 'force' }, archive());
  expect(typeCheck(app)).toBe('');
  expect(load(app, 'run.mjs')).toEqual({ link: true, client: true, documents: 'Document' });
}, 60_000);

it('type-checks README\'s snippet in a CommonJS project with node16 resolution, and loads through require', () => {
  const app = application('cjs-app', 'commonjs', { module: 'node16', moduleResolution: 'node16' }, archive());
  expect(typeCheck(app)).toBe('');
  expect(load(app, 'run.cjs')).toEqual({ link: true, client: true, documents: 'Document' });
}, 60_000);
