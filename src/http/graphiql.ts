import { gzipSync } from 'node:zlib';
import type { NextFunction, Request, Response } from 'express';

const DEFAULT_QUERY = `# Sign up (or log in), then paste the token into the Headers tab:
#   { "Authorization": "Bearer <token>" }
# Subscriptions use the same header: it is sent in connection_init.
mutation SignUp {
  signUp(input: { username: "ada", password: "correct horse battery" }) {
    token
    user { id username }
  }
}
`;

/**
 * Subscriptions authenticate in `connection_init` (`{ authorization }`, like Apollo Client), but
 * GraphiQL sends its Headers editor only with HTTP requests. Yoga's GraphiQL opens a new socket per
 * subscription and awaits `connectionParams` when it connects, so this reads the Authorization header
 * there: from the editor's latest text (`onEditHeaders` fires on every change, tab switches included)
 * or, before any edit, from the active tab GraphiQL restored from localStorage.
 * A missing header or a token that `me` does not accept throws: graphql-ws then closes with 4500 and
 * GraphiQL shows the message at once, whereas the server's 4403 is retried for some 40 s and then
 * shown as `{"isTrusted": true}`.
 */
const CONNECTION_PARAMS_SCRIPT = `
let chatHeadersText = null;
function chatEditHeaders(text) { chatHeadersText = text; }
function chatPersistedHeaders() {
  const state = JSON.parse(localStorage.getItem('graphiql:tabState') || 'null');
  const tab = state && state.tabs && state.tabs[state.activeTabIndex || 0];
  return (tab && tab.headers) || localStorage.getItem('graphiql:headers');
}
function chatAuthorization() {
  try {
    const headers = JSON.parse(chatHeadersText !== null ? chatHeadersText : chatPersistedHeaders() || '{}') || {};
    for (const key in headers) if (key.toLowerCase() === 'authorization') return headers[key];
  } catch (e) {}
  return undefined;
}
async function chatConnectionParams() {
  const authorization = chatAuthorization();
  if (!authorization) throw new Error('Subscriptions need {"Authorization": "Bearer <token>"} in the Headers tab');
  const res = await fetch('/graphql', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: authorization },
    body: JSON.stringify({ query: '{ me { id } }' }),
  }).catch(() => undefined);
  const body = res && (await res.json().catch(() => undefined));
  if (body && body.data && body.data.me === null) throw new Error('The Authorization header needs "Bearer <token>" with a valid, unexpired token: log in again');
  return { authorization: authorization };
}`;

let page: string | undefined;

/** The GraphiQL page, built once: every script, style and worker inlined, nothing from a CDN. */
function renderPage(): string {
  if (page) return page;
  // Loaded on first use: the bundle is ~9 MB and only browsers need it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const assets = require('@graphql-yoga/render-graphiql/graphiql') as Record<
    'js' | 'css' | 'favicon' | 'editorWorkerService' | 'jsonWorker' | 'graphqlWorker',
    string
  >;
  const options = {
    endpoint: '/graphql',
    subscriptionsProtocol: 'WS',
    title: 'Chat API — GraphiQL',
    defaultQuery: DEFAULT_QUERY,
    shouldPersistHeaders: true,
  };
  const script = (s: string) => s.replace(/<\/script/gi, '<\\/script');
  page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8" />
<title>${options.title}</title>
<link rel="icon" href="${assets.favicon}" />
<style>${assets.css}</style>
</head>
<body id="body" class="no-focus-outline">
<noscript>GraphiQL needs JavaScript.</noscript>
<div id="root"></div>
<script>
function prepareBlob(content) { return URL.createObjectURL(new Blob([content], { type: 'application/javascript' })); }
var workers = {
  editorWorkerService: prepareBlob(${script(JSON.stringify(assets.editorWorkerService))}),
  json: prepareBlob(${script(JSON.stringify(assets.jsonWorker))}),
  graphql: prepareBlob(${script(JSON.stringify(assets.graphqlWorker))}),
};
self.MonacoEnvironment = { globalAPI: false, getWorkerUrl: function (_id, label) { return workers[label]; } };
${script(CONNECTION_PARAMS_SCRIPT)}
${script(assets.js)};
YogaGraphiQL.renderYogaGraphiQL(
  document.querySelector('#root'),
  Object.assign(${JSON.stringify(options)}, { connectionParams: chatConnectionParams, onEditHeaders: chatEditHeaders })
);
</script>
</body>
</html>`;
  return page;
}

/**
 * `GET /graphql` from a browser (`Accept` prefers `text/html`) answers GraphiQL, also with a `query`
 * parameter: GraphiQL writes the operation there as it is edited, so a reload must find the page
 * again. Every other request goes on to the GraphQL server.
 */
export function graphiql(enabled: boolean) {
  return (req: Request, res: Response, next: NextFunction) => {
    const wantsHtml = req.method === 'GET' && req.accepts(['application/json', 'text/html']) === 'text/html';
    if (!wantsHtml) return next();
    if (!enabled) {
      res.status(404).json({ errors: [{ message: 'GraphiQL is disabled on this server', extensions: { code: 'NOT_FOUND' } }] });
      return;
    }
    // The page is ~9 MB; gzipped once, ~2 MB. Express answers 304 when the browser's ETag matches.
    res.type('html').set({ 'cache-control': 'no-cache', vary: 'accept-encoding' });
    if (req.acceptsEncodings('gzip')) res.set('content-encoding', 'gzip').send(gzippedPage());
    else res.send(renderPage());
  };
}

let gzipped: Buffer | undefined;

function gzippedPage(): Buffer {
  gzipped ??= gzipSync(renderPage());
  return gzipped;
}
