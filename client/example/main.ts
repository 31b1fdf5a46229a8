// A small page for frontend teams: sign in, subscribe to one room's events through the kit, and
// keep receiving across server restarts and dropped networks. The API's URLs and the room come
// from the query string: ?api=http://localhost:4000/graphql&room=<room id>.
import { ApolloClient, InMemoryCache } from '@apollo/client';
import { chatCacheConfig, createChatLink, LogInDocument, RoomEventsDocument, type MessageFieldsFragment, type Session } from '..';

const params = new URLSearchParams(location.search);
const httpUrl = params.get('api') ?? `${location.origin}/graphql`;
const wsUrl = httpUrl.replace(/^http/, 'ws');
const roomId = params.get('room') ?? '';
const STORE = 'chat-session';

const status = document.getElementById('status')!;
const list = document.getElementById('messages')!;
const show = (text: string) => (status.textContent = text);

const stored = (): Session | null => JSON.parse(sessionStorage.getItem(STORE) ?? 'null');
const link = createChatLink({
  httpUrl,
  wsUrl,
  session: stored,
  onSessionChange: (session) => sessionStorage.setItem(STORE, JSON.stringify(session)), // the old refresh token is spent
  onSessionEnd: (reason) => {
    sessionStorage.removeItem(STORE);
    show(`signed out: ${reason}`);
  },
});
const client = new ApolloClient({ link, cache: new InMemoryCache(chatCacheConfig) });

/** What the page shows of each message, by id: its latest state, and an assistant reply's text as it streams. */
const shown = new Map<string, { item: HTMLLIElement; author: string; body: string; deltaCount: number; deleted: boolean }>();

/** Shows a message as it stands: a new one in its place by seq, a known one changed in place (an edit, a deletion, a reply's end). */
function showMessage(message: MessageFieldsFragment) {
  let entry = shown.get(message.id);
  if (!entry) {
    const item = document.createElement('li');
    item.dataset.seq = String(message.seq);
    // By seq: a resume replays in change order, so a message changed while the socket was down comes after newer ones.
    const next = [...list.children].find((li) => Number((li as HTMLElement).dataset.seq) > message.seq);
    list.insertBefore(item, next ?? null);
    shown.set(message.id, (entry = { item, author: message.author.displayName, body: '', deltaCount: 0, deleted: false }));
  }
  Object.assign(entry, { body: message.body, deltaCount: message.deltaCount, deleted: message.deleted });
  render(entry);
}

function render(entry: { item: HTMLLIElement; author: string; body: string; deleted: boolean }) {
  entry.item.textContent = entry.deleted ? `${entry.author}: (deleted)` : `${entry.author}: ${entry.body}`;
}

function watchRoom() {
  show('subscribed');
  client.subscribe({ query: RoomEventsDocument, variables: { roomId } }).subscribe(({ data, error }) => {
    if (error) return show(`error: ${error.message}`);
    const event = data?.roomEvents;
    if (event?.__typename === 'MessageAdded' || event?.__typename === 'MessageUpdated') showMessage(event.message);
    else if (event?.__typename === 'AssistantDelta') {
      // An assistant reply's next piece: appended in order, once (a MessageUpdated tells the reply again when pieces were lost).
      const entry = shown.get(event.messageId);
      if (entry && event.index === entry.deltaCount) {
        entry.body += event.text;
        entry.deltaCount++;
        render(entry);
      }
    }
  });
}

document.getElementById('login')!.addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target as HTMLFormElement);
  let answer;
  try {
    answer = await client.mutate({
      mutation: LogInDocument,
      variables: { input: { username: String(form.get('username')), password: String(form.get('password')) } },
    });
  } catch (error) {
    return show(`error: ${(error as Error).message}`);
  }
  const { token, refreshToken, expiresAt } = answer.data!.logIn;
  const session = { token, refreshToken, expiresAt };
  sessionStorage.setItem(STORE, JSON.stringify(session));
  link.setSession(session);
  watchRoom();
});

if (stored()) watchRoom();
