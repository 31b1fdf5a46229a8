// A message's state as the server answers it, and how far a change has come in it.
//
// How an acknowledged change is recognised without knowing its change number: each message has
// "components" that only one client writes, one op at a time — its body (the author's edits,
// `… ✎<k>`), each user's reactions (short names `:<tag>-<n>:`, added in increasing `n`, removed
// oldest first, never down to none), and its deletion (which ends everything). A component's
// level only grows along the message's changes: body `k`; reactions `lo + hi` of the user's window
// of names present; deleted is Infinity. So a subscriber has seen an acknowledged change exactly
// when it received a state of that message whose level of that component is at least the level
// the mutation answered — the same state, or a later one that includes it (a replay or a heal
// delivers a message changed several times once, in its current state).
import { gql, type GqlResult, type TestUser } from '../../support/harness';

/** The fields of a message that a subscriber and the history page are compared on. */
export const STATE_FIELDS = 'id seq body editedAt deleted reactions { emoji count viewerReacted } replyCount lastReplyAt status';

/** A message's state as the server answered it (a mutation, a subscription event or a history page). */
export interface MessageState {
  id: string;
  seq: number;
  body: string;
  editedAt: string | null;
  deleted: boolean;
  reactions: Array<{ emoji: string; count: number; viewerReacted: boolean }>;
  replyCount: number;
  lastReplyAt: string | null;
  status: string;
}

/** Which part of a message a change wrote: the body, one user's reactions (by tag), or its life. */
export type Component = 'body' | 'life' | `react:${string}`;

/** An acknowledged change: the message, what it wrote and the level the answer showed. */
export interface AckedChange {
  messageId: string;
  component: Component;
  level: number;
  op: string;
}

/** A user's reaction names on one message: `:<tag>-<n>:`. */
export const reactionName = (tag: string, n: number) => `:${tag}-${n}:`;

/** The level of `component` in `state` (see the file comment). */
export function levelOf(state: MessageState, component: Component): number {
  if (state.deleted) return Infinity;
  if (component === 'life') return 0;
  if (component === 'body') return Number(/✎(\d+)$/.exec(state.body)?.[1] ?? 0);
  const { lo, hi } = windowOf(state, component.slice('react:'.length));
  return lo + hi;
}

/** The window of a user's reaction names present on a message: names `lo` … `hi - 1` (0, 0 when none). */
function windowOf(state: MessageState, tag: string): { lo: number; hi: number } {
  const ns = state.reactions
    .map((r) => new RegExp(`^:${tag}-(\\d+):$`).exec(r.emoji))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]));
  return ns.length ? { lo: Math.min(...ns), hi: Math.max(...ns) + 1 } : { lo: 0, hi: 0 };
}

/** The room's messages as `user` reads them through the `messages` query (every page). */
export async function historyAs(url: string, user: TestUser, roomId: string): Promise<Map<string, MessageState>> {
  const states = new Map<string, MessageState>();
  const PAGE = `query($r: ID!, $after: String) { messages(roomId: $r, first: 200, after: $after) {
    edges { node { ${STATE_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;
  let after: string | null = null;
  for (;;) {
    const res: GqlResult = await gql(url, PAGE, { r: roomId, after }, user.token);
    if (res.errors?.length) throw new Error(`messages: ${JSON.stringify(res.errors)}`);
    for (const edge of res.data.messages.edges as Array<{ node: MessageState }>) states.set(edge.node.id, edge.node);
    if (!res.data.messages.pageInfo.hasNextPage) return states;
    after = res.data.messages.pageInfo.endCursor;
  }
}
