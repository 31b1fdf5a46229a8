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
 * Reads the Authorization header of GraphiQL's active tab (persisted in localStorage) so that
 * subscriptions send it in `connection_init` as `{ authorization }`, like Apollo Client does.
 */
const CONNECTION_PARAMS_SCRIPT = `
function chatConnectionParams() {
  try {
    var state = JSON.parse(localStorage.getItem('graphiql:tabState') || 'null');
    var tab = state && state.tabs && state.tabs[state.activeTabIndex || 0];
    var raw = (tab && tab.headers) || localStorage.getItem('graphiql:headers') || '{}';
    var headers = JSON.parse(raw);
    for (var key in headers) if (key.toLowerCase() === 'authorization') return { authorization: headers[key] };
  } catch (e) {}
  return {};
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
  Object.assign(${JSON.stringify(options)}, { connectionParams: chatConnectionParams })
);
</script>
</body>
</html>`;
  return page;
}

/**
 * `GET /graphql` from a browser (`Accept: text/html`, no `query` parameter) answers GraphiQL;
 * every other request goes on to the GraphQL server.
 */
export function graphiql(enabled: boolean) {
  return (req: Request, res: Response, next: NextFunction) => {
    const wantsHtml = req.method === 'GET' && req.accepts(['application/json', 'text/html']) === 'text/html';
    if (!enabled || !wantsHtml || req.query.query !== undefined) return next();
    res.type('html').set('cache-control', 'no-cache').send(renderPage());
  };
}
