// A small page for frontend teams: sign in, subscribe to one room's events through the kit, and
// keep receiving across server restarts and dropped networks. The API's URLs and the room come
// from the query string: ?api=http://localhost:4000/graphql&room=<room id>.
import { ApolloClient, InMemoryCache } from '@apollo/client';
import { chatCacheConfig, createChatLink, LogInDocument, RoomEventsDocument, type Session } from '..';

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

function watchRoom() {
  show('subscribed');
  client.subscribe({ query: RoomEventsDocument, variables: { roomId } }).subscribe(({ data, error }) => {
    if (error) return show(`error: ${error.message}`);
    const event = data?.roomEvents;
    if (event?.__typename !== 'MessageAdded') return;
    const item = document.createElement('li');
    item.dataset.seq = String(event.message.seq);
    item.textContent = `${event.message.author.displayName}: ${event.message.body}`;
    // By seq: a resume replays in change order, so a message changed while the socket was down comes after newer ones.
    const next = [...list.children].find((li) => Number((li as HTMLElement).dataset.seq) > event.message.seq);
    list.insertBefore(item, next ?? null);
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
