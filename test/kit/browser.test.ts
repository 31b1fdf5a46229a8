// The kit's example page (client/example), bundled with esbuild and loaded in headless Chromium:
// sign in, subscribe to a room, restart the server under it (SIGTERM, then SIGKILL, on the same
// port), keep receiving with no gap and no duplicate, then show an edit and a deletion in place
// (README, "Connect from Apollo Client").
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { must, signUp, waitFor, type TestUser } from '../support/harness';
import { sharedUrls } from '../faults/support/backing';
import { killAllServers, spawnServer, type ChildServer } from '../faults/support/child-server';
import { pause, roomWith, sendOnce } from '../faults/support/traffic';
import { PASSWORD } from './support';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync', '--disable-quic'];
const EXAMPLE = path.resolve(__dirname, '../../client/example');

let api: ChildServer;
let env: Record<string, string>;
let site: Server;
let siteUrl: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run the browser test`);
  const { databaseUrl, redisUrl } = sharedUrls();
  env = { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl };
  api = await spawnServer('API', env);
  const bundle = await build({
    entryPoints: [path.join(EXAMPLE, 'main.ts')],
    bundle: true,
    write: false,
    platform: 'browser',
    format: 'iife',
    target: 'es2020',
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent',
  });
  const js = bundle.outputFiles[0].text;
  const html = await readFile(path.join(EXAMPLE, 'index.html'), 'utf8');
  site = createServer((req, res) => {
    const file = req.url?.split('?')[0];
    if (file === '/main.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(js);
    else if (file === '/') res.writeHead(200, { 'content-type': 'text/html' }).end(html);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  siteUrl = `http://127.0.0.1:${(site.address() as AddressInfo).port}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  await api.ready();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => site?.close(resolve));
  await killAllServers();
}, 60_000);

it('signs in, subscribes, and keeps receiving through a SIGTERM and a SIGKILL restart of the server, with no gap, then shows an edit and a deletion in place', async () => {
  const [reader, sender]: TestUser[] = await Promise.all([signUp(api.url), signUp(api.url)]);
  const roomId = await roomWith(api.url, [sender, reader]);
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${siteUrl}?api=${encodeURIComponent(api.url)}&room=${roomId}`);
  await page.fill('input[name=username]', reader.username);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button');
  await page.locator('#status', { hasText: 'subscribed' }).waitFor();
  await waitFor(async () => (await must(api.url, `{ room(id: "${roomId}") { lastSeq } }`, {}, reader.token)).room, 10_000);
  await pause(500); // the page's subscription reaches the server

  let sent = 0;
  const sendSome = async (n: number) => {
    for (let i = 0; i < n; i++) {
      sent++;
      while (!(await sendOnce({ url: api.url, user: sender }, roomId, `message ${sent}`, `b${sent}`, 5000)).ok) await pause(100);
    }
  };
  const seqsOnPage = () => page.$$eval('#messages li', (items) => items.map((li) => Number(li.getAttribute("data-seq"))));

  await sendSome(10);
  await waitFor(async () => (await seqsOnPage()).length >= 10, 20_000);

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const exited = api.exited;
    api.process.kill(signal);
    await exited;
    const restarting = spawnServer('API (restarted)', { ...env, PORT: String(api.port) });
    const sending = sendSome(10); // retried until the server is back
    api = await restarting;
    await api.ready();
    await sending;
  }
  await sendSome(5);
  await waitFor(async () => (await seqsOnPage()).length >= sent, 60_000, () => `page shows ${sent} expected`);
  await pause(500);

  // Changes reach the page as well: an edit in place, a deletion as a tombstone in its place.
  const edges = (await must(api.url, `query($r: ID!) { messages(roomId: $r, last: 100) { edges { node { id seq } } } }`, { r: roomId }, sender.token)).messages.edges;
  const idOf = (seq: number) => edges.find((e: { node: { seq: number } }) => e.node.seq === seq).node.id;
  await must(api.url, `mutation($i: EditMessageInput!) { editMessage(input: $i) { id } }`, { i: { messageId: idOf(3), body: 'message 3, edited' } }, sender.token);
  await must(api.url, `mutation($m: ID!) { deleteMessage(messageId: $m) { id } }`, { m: idOf(4) }, sender.token);
  const textOf = (seq: number) => page.textContent(`#messages li[data-seq="${seq}"]`);
  await waitFor(async () => (await textOf(3))?.endsWith(': message 3, edited') && (await textOf(4))?.endsWith(': (deleted)'), 20_000, () => "the page to show the edit of 3 and the deletion of 4");

  const seqs = await seqsOnPage();
  console.log(JSON.stringify({ scenario: 'example page in Chromium through two restarts', sent, shown: seqs.length }));
  expect(seqs).toEqual(Array.from({ length: sent }, (_, i) => i + 1));
  expect(await page.textContent('#status')).toBe('subscribed');
  expect(pageErrors).toEqual([]);
  await page.close();
});
