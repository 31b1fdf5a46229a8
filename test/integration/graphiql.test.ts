import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Locator, type Page, type WebSocket as PageSocket } from 'playwright-core';
import { createRoom, must, send, signUp, startServer, waitFor, type TestServer, type TestUser } from '../support/harness';

/**
 * GraphiQL in a real browser: served by this server with nothing loaded from elsewhere, the token
 * typed into its Headers editor authenticates queries over HTTP and subscriptions in the graphql-ws
 * `connection_init`.
 */

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
  '--disable-sync',
  '--disable-quic',
];

let server: TestServer;
let browser: Browser;
let user: TestUser;
/** A second member of the room, whose token replaces `user`'s in the Headers editor. */
let member: TestUser;
let roomId: string;
/** Every URL a page asked for, WebSockets included. */
const requested: string[] = [];
/** The frames each page's WebSockets sent, parsed. */
const sentFrames = new Map<Page, Array<{ type: string; payload?: Record<string, unknown> }>>();

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium) to run the GraphiQL browser test`);
  }
  server = await startServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  user = await signUp(server.url);
  roomId = await createRoom(server.url, user);
  member = await signUp(server.url);
  await must(server.url, `mutation($roomId: ID!) { joinRoom(roomId: $roomId) { id } }`, { roomId }, member.token);
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
});

/** A fresh browser profile (empty localStorage) that records every request of its pages. */
async function newContext(): Promise<BrowserContext> {
  const context = await browser.newContext();
  context.on('request', (request) => requested.push(request.url()));
  context.on('page', watchSockets);
  return context;
}

function watchSockets(page: Page) {
  sentFrames.set(page, []);
  page.on('websocket', (socket: PageSocket) => {
    requested.push(socket.url());
    socket.on('framesent', (frame) => sentFrames.get(page)!.push(JSON.parse(String(frame.payload))));
  });
}

/** The host a URL reaches; blob URLs carry their page's origin, data URLs reach none. */
function hostOf(url: string): string | null {
  if (url.startsWith('data:')) return null;
  return new URL(url.startsWith('blob:') ? url.slice('blob:'.length) : url).hostname;
}

const operationEditor = (page: Page) => page.getByRole('region', { name: 'Operation Editor' }).locator('.monaco-editor');
const headersEditor = (page: Page) => page.locator('.monaco-editor[data-uri$="-request-headers.json"]');
const resultWindow = (page: Page) => page.getByRole('region', { name: 'Result Window' });

async function openGraphiQL(context: BrowserContext): Promise<Page> {
  const page = await context.newPage();
  await page.goto(server.url);
  await operationEditor(page).waitFor();
  return page;
}

/** Replaces an editor's text the way a user pastes it (typing would trip Monaco's auto-closing brackets). */
async function fill(page: Page, editor: Locator, text: string) {
  await editor.click();
  await page.keyboard.press('ControlOrMeta+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.insertText(text);
}

/** Puts a named operation in the editor, waits until GraphiQL has parsed it (the tab takes its name), runs it. */
async function run(page: Page, name: string, operation: string) {
  await fill(page, operationEditor(page), operation);
  await page.locator('[role="tab"][aria-selected="true"]', { hasText: name }).waitFor();
  await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).click();
}

const showsInResult = (page: Page, text: string) => resultWindow(page).filter({ hasText: text }).waitFor({ timeout: 10_000 });

const watchOperation = () => `subscription Watch { messageAdded(roomId: "${roomId}") { seq body } }`;

/** Runs the Watch subscription, then sends a message over HTTP once the server listens; the result panel must show it. */
async function expectLiveMessage(page: Page) {
  await waitFor(() => server.app.hubs.listeners(roomId) === 0);
  await run(page, 'Watch', watchOperation());
  await waitFor(() => server.app.hubs.listeners(roomId) === 1);
  const message = await send(server.url, user, roomId, `from_http_${Date.now()}`);
  await showsInResult(page, message.body);
  return message;
}

describe('GraphiQL in Chromium', () => {
  let context: BrowserContext;
  let page: Page;
  beforeAll(async () => {
    context = await newContext();
    page = await openGraphiQL(context);
  });
  afterAll(() => context?.close());

  it('runs a query with the Authorization header typed into the Headers editor', async () => {
    await page.getByRole('button', { name: 'Headers', exact: true }).click();
    await fill(page, headersEditor(page), JSON.stringify({ Authorization: `Bearer ${user.token}` }));
    await run(page, 'Me', 'query Me { me { username } }');
    await showsInResult(page, user.username);
  });

  it('runs a subscription authenticated in connection_init with the header just typed, and shows a message sent over HTTP', async () => {
    // Another member's token, typed right before running: GraphiQL persists it only half a second later.
    await fill(page, headersEditor(page), JSON.stringify({ Authorization: `Bearer ${member.token}` }));
    await expectLiveMessage(page);
    const init = sentFrames.get(page)!.find((frame) => frame.type === 'connection_init');
    expect(init?.payload).toEqual({ authorization: `Bearer ${member.token}` });
  });

  it('after a reload, subscribes with the headers GraphiQL restored from localStorage', async () => {
    // Stop the running subscription, and let GraphiQL's debounced writes to localStorage land.
    await page.getByRole('button', { name: /^Stop/ }).click();
    await page.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).waitFor();
    await waitFor(async () => String(await page.evaluate("localStorage.getItem('graphiql:tabState')")).includes(member.token));
    expect(new URL(page.url()).searchParams.get('query')).toContain('Watch'); // GraphiQL keeps the operation in the URL
    await page.reload();
    await operationEditor(page).waitFor();
    sentFrames.set(page, []);
    await expectLiveMessage(page);
    expect(sentFrames.get(page)!.find((frame) => frame.type === 'connection_init')?.payload).toEqual({ authorization: `Bearer ${member.token}` });
  });

  it('explains a subscription without the header, or with a bad token, instead of retrying the 4403 close', async () => {
    const anonymous = await openGraphiQL(await newContext());
    await run(anonymous, 'Watch', watchOperation());
    await showsInResult(anonymous, 'Subscriptions need');
    await anonymous.getByRole('button', { name: 'Headers', exact: true }).click();
    await fill(anonymous, headersEditor(anonymous), JSON.stringify({ Authorization: 'Bearer not-a-token' }));
    await anonymous.getByRole('button', { name: 'Execute query (Ctrl-Enter)' }).click();
    await showsInResult(anonymous, 'log in again');
    expect(sentFrames.get(anonymous)!.some((frame) => frame.type === 'connection_init')).toBe(false);
    await anonymous.context().close();
  });

  it('made no request to any host but 127.0.0.1', () => {
    expect(requested.length).toBeGreaterThan(0);
    expect(requested.filter((url) => hostOf(url) !== null && hostOf(url) !== '127.0.0.1')).toEqual([]);
  });
});
