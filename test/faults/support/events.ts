// `roomEvents` subscribers that count changes like messages (API.md guarantee 8): each records
// every MessageAdded/MessageUpdated in arrival order, resumes with the cursor of the last event it
// received, and keeps the view a client builds by applying them (see change-tally.ts for the account).
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { waitFor, type TestUser } from '../../support/harness';
import { STATE_FIELDS, type MessageState } from './message-state';
import { roomStart } from './traffic';

/** The change number an event cursor names: base64url of `e1:<roomId>:<change>`. */
export function changeOf(cursor: string): number {
  const [tag, , n] = Buffer.from(cursor, 'base64url').toString('utf8').split(':');
  if (tag !== 'e1') throw new Error(`not an event cursor: ${cursor}`);
  return Number(n);
}

/** A subscription result as recorded. */
export interface RoomEvent {
  kind: 'MessageAdded' | 'MessageUpdated';
  cursor: string;
  change: number;
  message: MessageState;
  session: number;
}

export const ROOM_EVENTS = `subscription($roomId: ID!, $after: String) {
  roomEvents(roomId: $roomId, after: $after) {
    __typename
    ... on MessageAdded { cursor message { ${STATE_FIELDS} } }
    ... on MessageUpdated { cursor message { ${STATE_FIELDS} } }
  }
}`;

/**
 * One logical `roomEvents` subscriber that may connect several times, each time resuming after the
 * last event it received (or `firstCursor`, a message or event cursor, before the first).
 */
export class EventSubscriber {
  readonly events: RoomEvent[] = [];
  readonly closeCodes: number[] = [];
  readonly errors: unknown[] = [];
  ended = 0;
  sessions = 0;
  /** The cursor each connection resumed after. */
  readonly resumedAfter: string[] = [];
  private client?: Client;

  constructor(
    readonly name: string,
    readonly roomId: string,
    readonly user: TestUser,
    readonly firstCursor = roomStart(roomId),
  ) {}

  get lastCursor(): string {
    return this.events.at(-1)?.cursor ?? this.firstCursor;
  }

  get lastChange(): number {
    return this.events.reduce((max, e) => Math.max(max, e.change), 0);
  }

  get lastSeq(): number {
    return this.events.reduce((max, e) => (e.kind === 'MessageAdded' ? Math.max(max, e.message.seq) : max), 0);
  }

  /** The messages as MessageAdded events delivered them (for the message tally). */
  added(): Array<{ id: string; seq: number }> {
    return this.events.filter((e) => e.kind === 'MessageAdded').map((e) => ({ id: e.message.id, seq: e.message.seq }));
  }

  connect(wsUrl: string, after = this.lastCursor): void {
    const session = ++this.sessions;
    this.resumedAfter.push(after);
    const client = createClient({
      url: wsUrl,
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${this.user.token}` },
      retryAttempts: 0,
      lazy: true,
      on: { closed: (event) => this.closeCodes.push((event as { code: number }).code) },
    });
    this.client = client;
    type Event = { __typename: RoomEvent['kind'] | 'AssistantDelta'; cursor: string; message: MessageState };
    client.subscribe<{ roomEvents: Event }>(
      { query: ROOM_EVENTS, variables: { roomId: this.roomId, after } },
      {
        next: (result) => {
          if (this.client !== client) return; // a connection it has left: the next one resumes after what it kept
          const e = result.data?.roomEvents;
          if (e && e.__typename !== 'AssistantDelta') this.events.push({ kind: e.__typename, cursor: e.cursor, change: changeOf(e.cursor), message: e.message, session });
          if (result.errors?.length) this.errors.push(result.errors);
        },
        error: (err) => {
          if (this.client === client) this.ended++;
          this.errors.push(err);
        },
        complete: () => {
          if (this.client === client) this.ended++;
        },
      },
    );
  }

  async disconnect(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.dispose();
  }

  /** Waits until it received the room's latest change and newest message as the database holds them. */
  async reachTruth(truth: { lastSeq: number; lastChange: number }, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      () => this.lastChange >= truth.lastChange && this.lastSeq >= truth.lastSeq,
      timeoutMs,
      () => `${this.name} reached change ${this.lastChange} of ${truth.lastChange}, seq ${this.lastSeq} of ${truth.lastSeq} (${this.events.length} events, errors ${JSON.stringify(this.errors).slice(0, 500)})`,
    );
  }

  /** The view a client builds: each message as the last event about it left it. */
  view(): Map<string, MessageState> {
    const view = new Map<string, MessageState>();
    for (const e of this.events) view.set(e.message.id, e.message);
    return view;
  }
}
