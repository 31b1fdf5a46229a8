import type { GraphQLResolveInfo, GraphQLScalarType, GraphQLScalarTypeConfig } from 'graphql';
import type { UserEntity } from '../db/entities/user';
import type { RoomModel, MessageModel } from '../chat/models';
import type { ReactionGroup } from '../db/entities/message';
import type { MemberModel, MemberChangedModel } from '../chat/membership-service';
import type { TypingChangedModel, PresenceChangedModel } from '../presence/models';
import type { GraphQLContext } from './context';
export type Maybe<T> = T | null;
export type InputMaybe<T> = Maybe<T>;
export type Omit<T, K extends keyof T> = Pick<T, Exclude<keyof T, K>>;
export type RequireFields<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: NonNullable<T[P]> };
/** All built-in and custom scalars, mapped to their actual values */
export type Scalars = {
  ID: { input: string; output: string; }
  String: { input: string; output: string; }
  Boolean: { input: boolean; output: boolean; }
  Int: { input: number; output: number; }
  Float: { input: number; output: number; }
  /** An instant in time, as an ISO 8601 string in UTC (for example `2026-11-22T09:28:12.000Z`). */
  DateTime: { input: Date | string; output: Date | string; }
};

/** The viewer joined or was added to a room (also a new direct room). */
export type AddedToRoom = {
  __typename?: 'AddedToRoom';
  /** The room. */
  room: Room;
};

/** What `askAssistant` needs. */
export type AskAssistantInput = {
  /** The message to answer; the viewer must be able to read it. The reply goes into its thread. */
  messageId: Scalars['ID']['input'];
};

/** A piece of an assistant reply's text, streamed as the model writes it. */
export type AssistantDelta = {
  __typename?: 'AssistantDelta';
  /** Position of this piece in the reply: 0, 1, 2, …; append pieces in this order. */
  index: Scalars['Int']['output'];
  /** The reply being written. */
  messageId: Scalars['ID']['output'];
  /** The text to append. */
  text: Scalars['String']['output'];
};

/** A session's tokens and the user it belongs to: a short-lived access token and a refresh token that renews it. */
export type AuthPayload = {
  __typename?: 'AuthPayload';
  /** When the access token stops being accepted (`JWT_TTL_SECONDS` after it was issued); call `refreshSession` before then. */
  expiresAt: Scalars['DateTime']['output'];
  /** A long-lived secret for `refreshSession`, usable once: each refresh returns the next one. Store it like a password; presenting a used one again ends the session. */
  refreshToken: Scalars['String']['output'];
  /** The access token. Send as `Authorization: Bearer <token>` over HTTP, or `{ "authorization": "Bearer <token>" }` in `connection_init` over WebSocket. */
  token: Scalars['String']['output'];
  /** The signed-in user. */
  user: User;
};

/** What `createRoom` needs. */
export type CreateRoomInput = {
  /** Whether a message mentioning `@assistant` gets an AI reply. Defaults to false. */
  assistantEnabled?: InputMaybe<Scalars['Boolean']['input']>;
  /** The assistant's instructions for this room (its system prompt), up to 4,000 characters. */
  assistantInstructions?: InputMaybe<Scalars['String']['input']>;
  /** PUBLIC or PRIVATE. */
  kind: RoomKind;
  /** Display name, 1 to 100 characters after trimming, on one line (no control characters, line breaks or direction overrides). */
  name: Scalars['String']['input'];
};

/** What `editMessage` needs. */
export type EditMessageInput = {
  /** The new text: as a sent text, something visible, no control characters but tabs and line breaks, at most 4,000 characters. */
  body: Scalars['String']['input'];
  /** The message to edit; only its author may, and not once it is deleted. */
  messageId: Scalars['ID']['input'];
};

/** What `logIn` needs to sign in. */
export type LogInInput = {
  /** The account's password. */
  password: Scalars['String']['input'];
  /** The username given at sign-up (any case). */
  username: Scalars['String']['input'];
};

/** A user's place in a room. */
export type Member = {
  __typename?: 'Member';
  /** True while they have a WebSocket open on any server; `PresenceChanged` on `roomEvents` tells when it flips. */
  online: Scalars['Boolean']['output'];
  /** Their role in the room. */
  role: Role;
  /** The user. */
  user: User;
};

/** Someone joined or was added (role MEMBER), changed role, or left or was removed (role null). */
export type MemberChanged = {
  __typename?: 'MemberChanged';
  /** Their role now; null when they are no longer a member. */
  role?: Maybe<Role>;
  /** The room. */
  roomId: Scalars['ID']['output'];
  /** The member. */
  user: User;
};

/** A page of members (Relay connection), in the order they came. */
export type MemberConnection = {
  __typename?: 'MemberConnection';
  /** The members of this page. */
  edges: Array<MemberEdge>;
  /** Where this page sits. */
  pageInfo: PageInfo;
};

/** One member in a `MemberConnection` page. */
export type MemberEdge = {
  __typename?: 'MemberEdge';
  /** Opaque position of this edge; pass as `after` to continue. */
  cursor: Scalars['String']['output'];
  /** The member. */
  node: Member;
};

/** A new message mentions the viewer. */
export type Mentioned = {
  __typename?: 'Mentioned';
  /** The message. */
  message: Message;
};

/** A message in a room, numbered by `seq` without gaps. */
export type Message = {
  __typename?: 'Message';
  /** Who wrote it. */
  author: User;
  /** The text: up to 4,000 characters for a message a person sends; an assistant reply may be longer. */
  body: Scalars['String']['output'];
  /** The sender's idempotency key, echoed back. */
  clientId?: Maybe<Scalars['String']['output']>;
  /** When it was committed. */
  createdAt: Scalars['DateTime']['output'];
  /** Opaque position of this message; the same string as its edge's cursor. Pass as `after` to `messages`, `messageAdded` or `roomEvents` to resume after it. */
  cursor: Scalars['String']['output'];
  /** True for a deleted message: a tombstone that keeps its place (`seq`) and its thread's replies, with an empty body and no reactions. */
  deleted: Scalars['Boolean']['output'];
  /** How many `AssistantDelta` pieces `body` already holds. A client that reads a STREAMING reply from history appends only the deltas with `index >= deltaCount`. */
  deltaCount: Scalars['Int']['output'];
  /** When the author last edited the body; null when never edited. */
  editedAt?: Maybe<Scalars['DateTime']['output']>;
  /** Opaque, stable identifier. */
  id: Scalars['ID']['output'];
  /** For a thread root: when its newest reply that is not deleted was sent; null without replies. */
  lastReplyAt?: Maybe<Scalars['DateTime']['output']>;
  /** The room's members the body mentions as `@username` (not its author; a name of someone outside the room mentions no one). */
  mentions: Array<User>;
  /** The thread root, for a reply; null for a message that starts a thread. */
  parent?: Maybe<Message>;
  /** Reactions grouped by emoji, in the order each emoji was first used. */
  reactions: Array<Reaction>;
  /** For a thread root: how many replies it has (deleted ones not counted); 0 otherwise. */
  replyCount: Scalars['Int']['output'];
  /** The room the message belongs to. */
  room: Room;
  /** Position in the room: 1, 2, 3, … without gaps, in commit order. */
  seq: Scalars['Int']['output'];
  /** COMPLETE, or STREAMING/FAILED/CANCELLED for an assistant reply. */
  status: MessageStatus;
  /** Why an assistant reply ended FAILED or CANCELLED, in words a person can read; null otherwise. */
  statusReason?: Maybe<Scalars['String']['output']>;
  /** The room's change number of this state of the message: its insert, or its latest edit, deletion, reaction change, reply in its thread or assistant reply's end. A newer state has a higher version, so a cache that hears of one message by several subscriptions (`roomEvents`, `myEvents`) keeps the newest state whatever order they arrive in (the client kit's cache does). A streaming reply's growing text keeps its version: compare `deltaCount`. */
  version: Scalars['Int']['output'];
};

/** A new message was committed in the room (or, when resuming, a message added since the cursor, in its current state). */
export type MessageAdded = {
  __typename?: 'MessageAdded';
  /** Opaque position of this event in the room's change log. Pass as `after` to `roomEvents` to resume after it. */
  cursor: Scalars['String']['output'];
  /** The new message. */
  message: Message;
};

/** A page of messages (Relay connection), oldest first. */
export type MessageConnection = {
  __typename?: 'MessageConnection';
  /** The messages of this page, in increasing `seq`. */
  edges: Array<MessageEdge>;
  /** Where this page sits. */
  pageInfo: PageInfo;
};

/** One message in a `MessageConnection` page. */
export type MessageEdge = {
  __typename?: 'MessageEdge';
  /** Opaque position of this edge; the same string as the message's `cursor`. */
  cursor: Scalars['String']['output'];
  /** The message. */
  node: Message;
};

/** The state of a message's body. */
export type MessageStatus =
  /** An assistant reply stopped with `cancelAssistant`; the body keeps the text streamed until then. */
  | 'CANCELLED'
  /** The body is final. */
  | 'COMPLETE'
  /** An assistant reply that ended with an error; the body and `statusReason` say why. */
  | 'FAILED'
  /** An assistant reply whose text is still arriving as `AssistantDelta` events. */
  | 'STREAMING';

/** A message changed: an edit, a deletion, a reaction, a new reply in its thread, an assistant reply's end. */
export type MessageUpdated = {
  __typename?: 'MessageUpdated';
  /** Opaque position of this event in the room's change log. Pass as `after` to `roomEvents` to resume after it. */
  cursor: Scalars['String']['output'];
  /** The message as it is now: replace your copy with it. */
  message: Message;
};

/** The root of every write: accounts, rooms and messages. */
export type Mutation = {
  __typename?: 'Mutation';
  /** The room's OWNER or an ADMIN brings a user into the room (PRIVATE or PUBLIC; never DIRECT). Anyone else gets `FORBIDDEN`; an unknown user is `NOT_FOUND`. */
  addMember: Room;
  /** Adds the viewer's reaction to a message of one of their rooms. Reacting again with the same emoji changes nothing. At most 50 different emoji per message; not on a deleted message (`CONFLICT`). */
  addReaction: Message;
  /** Asks the assistant to answer a message. Returns at once the reply: a message by the assistant in the asked message's thread, `STREAMING` with an empty body. Its text arrives as `AssistantDelta` events on `roomEvents`, then a `MessageUpdated` with `COMPLETE` and the full body (or `FAILED` and a readable reason). Asking about the same message again returns the same reply. `ASSISTANT_UNAVAILABLE` when the server has no model configured; `RATE_LIMITED` (with `retryAfterMs`) past the per-user limits. */
  askAssistant: Message;
  /** Stops a streaming assistant reply (the asker, the room's OWNER or an ADMIN may), from any instance. The text so far is kept and the status becomes `CANCELLED`. A reply that already ended is returned unchanged. */
  cancelAssistant: Message;
  /** Creates a room; the viewer becomes its OWNER. */
  createRoom: Room;
  /** Deletes a message: its author, the room's OWNER or an ADMIN may. It stays as a tombstone (`deleted: true`, body erased, `seq` kept; its thread's replies stay). Deleting it again changes nothing. */
  deleteMessage: Message;
  /** The author changes a message's text (same rules as a send); `editedAt` is set and subscribers get a `MessageUpdated`. Only the author edits: anyone else, and so any assistant reply, gets `FORBIDDEN`; a deleted message gets `CONFLICT`. The same text again changes nothing. */
  editMessage: Message;
  /** Joins a PUBLIC room (joining twice is harmless). A PRIVATE or unknown room is `FORBIDDEN`. */
  joinRoom: Room;
  /** The viewer leaves the room; their live subscriptions to it end with `FORBIDDEN`. The OWNER hands OWNER over first (`setMemberRole`), and a DIRECT room cannot be left (`CONFLICT`). */
  leaveRoom: Scalars['Boolean']['output'];
  /** Signs in. A wrong username or password is `UNAUTHENTICATED` (the same answer for both). */
  logIn: AuthPayload;
  /** Ends the viewer's session on every instance: its access and refresh tokens stop working and its WebSockets close with 4403. `UNAUTHENTICATED` without a valid token. */
  logOut: Scalars['Boolean']['output'];
  /** The viewer has read the room up to this message: `lastReadSeq` moves to it, never back (an older cursor changes nothing), and `unreadCount` follows. */
  markRead: Room;
  /** The viewer's DIRECT room with another user: created the first time, the same room every later time, also when both open it at once. Not with oneself or the assistant (`BAD_USER_INPUT`); an unknown user is `NOT_FOUND`. */
  openDirectRoom: Room;
  /** Renews a session: a new access token and a new refresh token; the one given stops working. A refresh token that was already used ends the whole session (it was copied), and an unknown, expired or ended one is `UNAUTHENTICATED`. Sent over a WebSocket of the same session, it also renews that socket: it stays open past the old token's expiry, its subscriptions untouched. */
  refreshSession: AuthPayload;
  /** The room's OWNER or an ADMIN removes a MEMBER (only the OWNER removes an ADMIN; the OWNER cannot be removed: `CONFLICT`). That user's live subscriptions to the room end with `FORBIDDEN` on every instance. A user who is not a member is `NOT_FOUND`. */
  removeMember: Room;
  /** Removes the viewer's reaction; removing one that is not there changes nothing. */
  removeReaction: Message;
  /** Sends a message. It is committed, numbered and then delivered to subscribers. With a `clientId`, retries return the first message. The sender's read position moves to it. */
  sendMessage: Message;
  /** The room's OWNER makes a member ADMIN or MEMBER, or hands OWNER over (the old OWNER becomes ADMIN, so a room has one OWNER). Members see a `MemberChanged`. A user who is not a member is `NOT_FOUND`; the OWNER's own role is `CONFLICT`. */
  setMemberRole: Room;
  /** Tells the room's `roomEvents` subscribers that the viewer is typing (`typing: true`) or stopped (`typing: false`); members only (`FORBIDDEN` otherwise, the same answer for a room that does not exist). Call it with `true` while the user types — repeats within a second cost nothing and emit nothing new — and with `false` when they send or clear the text. Typing ends by itself a few seconds after the last `true`, and at once when the member leaves or is removed. Always returns true. */
  setTyping: Scalars['Boolean']['output'];
  /** Creates an account and signs it in. A taken username is `CONFLICT`; an invalid one is `BAD_USER_INPUT`. */
  signUp: AuthPayload;
  /** Changes a room: its name (OWNER or ADMIN) and its assistant settings (OWNER). Not for DIRECT rooms. */
  updateRoom: Room;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationAddMemberArgs = {
  roomId: Scalars['ID']['input'];
  userId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationAddReactionArgs = {
  input: ReactionInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationAskAssistantArgs = {
  input: AskAssistantInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationCancelAssistantArgs = {
  messageId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationCreateRoomArgs = {
  input: CreateRoomInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationDeleteMessageArgs = {
  messageId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationEditMessageArgs = {
  input: EditMessageInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationJoinRoomArgs = {
  roomId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationLeaveRoomArgs = {
  roomId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationLogInArgs = {
  input: LogInInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationLogOutArgs = {
  allSessions?: InputMaybe<Scalars['Boolean']['input']>;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationMarkReadArgs = {
  cursor: Scalars['String']['input'];
  roomId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationOpenDirectRoomArgs = {
  userId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationRefreshSessionArgs = {
  refreshToken: Scalars['String']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationRemoveMemberArgs = {
  roomId: Scalars['ID']['input'];
  userId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationRemoveReactionArgs = {
  input: ReactionInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationSendMessageArgs = {
  input: SendMessageInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationSetMemberRoleArgs = {
  role: Role;
  roomId: Scalars['ID']['input'];
  userId: Scalars['ID']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationSetTypingArgs = {
  roomId: Scalars['ID']['input'];
  typing: Scalars['Boolean']['input'];
};


/** The root of every write: accounts, rooms and messages. */
export type MutationSignUpArgs = {
  input: SignUpInput;
};


/** The root of every write: accounts, rooms and messages. */
export type MutationUpdateRoomArgs = {
  input: UpdateRoomInput;
};

/** What happens to the viewer across all their rooms. */
export type MyEvent = AddedToRoom | Mentioned | ReadStateChanged | RemovedFromRoom | RoomActivity;

/** Where a page of a Relay connection sits in the whole list. */
export type PageInfo = {
  __typename?: 'PageInfo';
  /** The cursor of the last edge, or null for an empty page. */
  endCursor?: Maybe<Scalars['String']['output']>;
  /** True when more items follow the last edge of this page. */
  hasNextPage: Scalars['Boolean']['output'];
  /** True when more items precede the first edge of this page. */
  hasPreviousPage: Scalars['Boolean']['output'];
  /** The cursor of the first edge, or null for an empty page. */
  startCursor?: Maybe<Scalars['String']['output']>;
};

/** A member of the room came online (their first WebSocket, on any server, opened) or went offline (their last one closed, or the server holding it stopped answering: within about 30 seconds). Ephemeral: never stored, never replayed on resume, no `cursor`; `Member.online` answers the current state. */
export type PresenceChanged = {
  __typename?: 'PresenceChanged';
  /** True when they came online, false when they went offline. */
  online: Scalars['Boolean']['output'];
  /** The room this event was delivered in (one event per room of the user). */
  roomId: Scalars['ID']['output'];
  /** Who came online or went offline. */
  user: User;
};

/** The root of every read: the signed-in user, rooms and message history. */
export type Query = {
  __typename?: 'Query';
  /** The signed-in user, or null without a valid token. */
  me?: Maybe<User>;
  /** A page of a room's history, oldest first. Use `first`/`after` to read forwards or `last`/`before` to read backwards (default: the newest 50). The viewer must be a member, otherwise `FORBIDDEN`. */
  messages: MessageConnection;
  /** The directory: PUBLIC rooms, whether the viewer is a member or not, by name. */
  publicRooms: RoomConnection;
  /** A room the viewer is a member of; null when it does not exist or the viewer may not see it. */
  room?: Maybe<Room>;
  /** The rooms the viewer is a member of, in the order joined. */
  rooms: RoomConnection;
  /** Full-text search over the messages of the viewer's rooms (or of one of them), best match first; deleted messages are never found. The query is written as in a web search: words, `"a phrase"`, `-excluded`, `or`. Edge cursors are the messages' own cursors (`Message.cursor`); pass one as `after` for the next page: it starts after the place that result has in the order now, however many matching messages were sent meanwhile. A result deleted or edited out of the search since, or one the viewer can no longer read, has no place: `BAD_USER_INPUT` on `after`, search again. */
  searchMessages: MessageConnection;
  /** People whose username or display name starts with `query` (any case), an exact username first: for direct rooms and invitations. Never the assistant. */
  users: Array<User>;
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QueryMessagesArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  before?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  last?: InputMaybe<Scalars['Int']['input']>;
  roomId: Scalars['ID']['input'];
  threadId?: InputMaybe<Scalars['ID']['input']>;
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QueryPublicRoomsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  query?: InputMaybe<Scalars['String']['input']>;
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QueryRoomArgs = {
  id: Scalars['ID']['input'];
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QueryRoomsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QuerySearchMessagesArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
  query: Scalars['String']['input'];
  roomId?: InputMaybe<Scalars['ID']['input']>;
};


/** The root of every read: the signed-in user, rooms and message history. */
export type QueryUsersArgs = {
  first?: InputMaybe<Scalars['Int']['input']>;
  query: Scalars['String']['input'];
};

/** One emoji's reactions on a message. */
export type Reaction = {
  __typename?: 'Reaction';
  /** How many people reacted with it. */
  count: Scalars['Int']['output'];
  /** The emoji: one emoji character (e.g. 👍), in its fully-qualified form (❤️, whether it was sent as ❤ or ❤️), or a short name between colons (e.g. `:shipit:`). */
  emoji: Scalars['String']['output'];
  /** Whether the viewer is one of them. */
  viewerReacted: Scalars['Boolean']['output'];
};

/** What `addReaction` and `removeReaction` need. */
export type ReactionInput = {
  /** One emoji (e.g. 👍, 🇫🇷, 👩🏽‍💻; nothing undrawn after it) or a short name of 1 to 32 lower-case letters, digits, `_`, `+` or `-` between colons (e.g. `:shipit:`). An emoji is taken in its fully-qualified form: ❤ and ❤️ are the same reaction. */
  emoji: Scalars['String']['input'];
  /** The message to react to; the viewer must be a member of its room. */
  messageId: Scalars['ID']['input'];
};

/** The viewer's read position in a room moved (for example with `markRead` on another device). */
export type ReadStateChanged = {
  __typename?: 'ReadStateChanged';
  /** The room, with its new `lastReadSeq` and `unreadCount`. */
  room: Room;
};

/** The viewer left or was removed from a room. */
export type RemovedFromRoom = {
  __typename?: 'RemovedFromRoom';
  /** The room's id. */
  roomId: Scalars['ID']['output'];
};

/** A member's role in a room. */
export type Role =
  /** Helps the OWNER run the room: may delete others' messages and cancel others' assistant replies. */
  | 'ADMIN'
  /** Reads and writes the room. */
  | 'MEMBER'
  /** Created the room; may add and remove members and change the room. */
  | 'OWNER';

/** A conversation with its members and an ordered message history. */
export type Room = {
  __typename?: 'Room';
  /** Whether a message mentioning `@assistant` gets an AI reply. */
  assistantEnabled: Scalars['Boolean']['output'];
  /** The assistant's instructions for this room (its system prompt), or null for the default. */
  assistantInstructions?: Maybe<Scalars['String']['output']>;
  /** Opaque, stable identifier. */
  id: Scalars['ID']['output'];
  /** PUBLIC, PRIVATE or DIRECT. */
  kind: RoomKind;
  /** The newest message (possibly a deleted one's tombstone, or a thread reply), or null for an empty room or when the viewer is not a member. */
  lastMessage?: Maybe<Message>;
  /** The `seq` of the newest message the viewer has read (see `markRead`; sending moves it too). `lastSeq` when the viewer is not a member: there is nothing for them to read. */
  lastReadSeq: Scalars['Int']['output'];
  /** The `seq` of the newest message (0 when empty). Messages are numbered 1, 2, 3, … without gaps. */
  lastSeq: Scalars['Int']['output'];
  /** How many members the room has. */
  memberCount: Scalars['Int']['output'];
  /** The members in the order they came, with their roles: for members, and for anyone signed in when the room is PUBLIC (otherwise `FORBIDDEN`). */
  members: MemberConnection;
  /** How many of the viewer's unread messages (`seq` above `lastReadSeq`, not deleted) mention the viewer. 0 when the viewer is not a member. */
  mentionCount: Scalars['Int']['output'];
  /** Display name, 1 to 100 characters. For a DIRECT room: the other person's display name. */
  name: Scalars['String']['output'];
  /** Exactly how many messages have a `seq` above `lastReadSeq` (deleted ones included): `lastSeq - lastReadSeq`, so 0 when the viewer is not a member. */
  unreadCount: Scalars['Int']['output'];
  /** The viewer's role, or null when the viewer is not a member. */
  viewerRole?: Maybe<Role>;
};


/** A conversation with its members and an ordered message history. */
export type RoomMembersArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  first?: InputMaybe<Scalars['Int']['input']>;
};

/** A new message in one of the viewer's rooms. */
export type RoomActivity = {
  __typename?: 'RoomActivity';
  /** The new message. */
  message: Message;
  /** The room, with the viewer's new `unreadCount`. */
  room: Room;
};

/** A page of rooms (Relay connection), in the order the viewer joined them. */
export type RoomConnection = {
  __typename?: 'RoomConnection';
  /** The rooms of this page. */
  edges: Array<RoomEdge>;
  /** Where this page sits. */
  pageInfo: PageInfo;
};

/** One room in a `RoomConnection` page. */
export type RoomEdge = {
  __typename?: 'RoomEdge';
  /** Opaque position of this edge; pass as `after` to continue. */
  cursor: Scalars['String']['output'];
  /** The room. */
  node: Room;
};

/** Everything that happens in a room, in order. */
export type RoomEvent = AssistantDelta | MemberChanged | MessageAdded | MessageUpdated | PresenceChanged | TypingChanged;

/** Who may find and join a room. */
export type RoomKind =
  /** A conversation of two people, opened with `openDirectRoom`: one per pair, no OWNER (both are MEMBERs), nobody else can join or be added. */
  | 'DIRECT'
  /** Only its OWNER or an ADMIN can bring users in, with `addMember`. */
  | 'PRIVATE'
  /** Anyone signed in may join with `joinRoom`. */
  | 'PUBLIC';

/** What `sendMessage` needs. */
export type SendMessageInput = {
  /** The text: something visible (not only white space or zero-width characters), no control characters but tabs and line breaks, at most 4,000 characters. */
  body: Scalars['String']['input'];
  /** Idempotency key chosen by the client (1 to 128 characters). Sending again with the same key returns the first message. */
  clientId?: InputMaybe<Scalars['String']['input']>;
  /** Reply to this message (of the same room); the reply joins that message's thread. */
  parentId?: InputMaybe<Scalars['ID']['input']>;
  /** The room to send into; the viewer must be a member. */
  roomId: Scalars['ID']['input'];
};

/** What `signUp` needs to create an account. */
export type SignUpInput = {
  /** Name shown in the interface, 1 to 64 characters after trimming, on one line (no control characters, line breaks or direction overrides); defaults to the username. */
  displayName?: InputMaybe<Scalars['String']['input']>;
  /** At least 8 characters, at most 256. */
  password: Scalars['String']['input'];
  /** 3 to 32 letters, digits or underscores; must not be taken (case-insensitively). */
  username: Scalars['String']['input'];
};

/** Live streams over WebSocket (subprotocol `graphql-transport-ws`, path `/graphql`). */
export type Subscription = {
  __typename?: 'Subscription';
  /** New messages of a room in increasing `seq`, each once. With `after`, first every message after that cursor, then live ones, with no gap and no duplicate. */
  messageAdded: Message;
  /** The viewer's own feed across all their rooms, on one subscription however many rooms: new messages (`RoomActivity`), mentions, rooms joined and left, read positions moved elsewhere. It is not resumable: after a reconnect, read `rooms` again (unread counts and last messages are exact) and resume each open room's `roomEvents` from its last cursor. */
  myEvents: MyEvent;
  /** Everything that happens in a room, in the order of its change log: new messages (`MessageAdded`), changed messages in their new state (`MessageUpdated`: edits, deletions, reactions, thread replies, an assistant reply's end), and assistant text as it streams (`AssistantDelta`, not replayed). With `after`, first every change after that point — each message added since as `MessageAdded`, each message changed since once, in its current state, as `MessageUpdated` — then live ones, with no gap and no duplicate. Keep the `cursor` of the last `MessageAdded`/`MessageUpdated` you applied and resume with it. */
  roomEvents: RoomEvent;
};


/** Live streams over WebSocket (subprotocol `graphql-transport-ws`, path `/graphql`). */
export type SubscriptionMessageAddedArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  roomId: Scalars['ID']['input'];
};


/** Live streams over WebSocket (subprotocol `graphql-transport-ws`, path `/graphql`). */
export type SubscriptionRoomEventsArgs = {
  after?: InputMaybe<Scalars['String']['input']>;
  roomId: Scalars['ID']['input'];
};

/** A member of the room started or stopped typing. Ephemeral: never stored, never replayed on resume, no `cursor`. */
export type TypingChanged = {
  __typename?: 'TypingChanged';
  /** The room they are typing in. */
  roomId: Scalars['ID']['output'];
  /** True when they started typing; false when they stopped (`setTyping(false)`) or their typing expired a few seconds after their last `setTyping(true)`. */
  typing: Scalars['Boolean']['output'];
  /** Who is typing. */
  user: User;
};

/** What `updateRoom` changes; omitted fields stay as they are. */
export type UpdateRoomInput = {
  /** Whether a message mentioning `@assistant` gets an AI reply. */
  assistantEnabled?: InputMaybe<Scalars['Boolean']['input']>;
  /** The assistant's instructions for this room (its system prompt), up to 4,000 characters; an empty string clears them. */
  assistantInstructions?: InputMaybe<Scalars['String']['input']>;
  /** The new name, 1 to 100 characters after trimming, on one line (no control characters, line breaks or direction overrides) (OWNER or ADMIN). */
  name?: InputMaybe<Scalars['String']['input']>;
  /** The room: its OWNER or an ADMIN may rename it; only its OWNER changes the assistant. */
  roomId: Scalars['ID']['input'];
};

/** A person with an account, or the assistant. */
export type User = {
  __typename?: 'User';
  /** Name shown in the interface. */
  displayName: Scalars['String']['output'];
  /** Opaque, stable identifier. */
  id: Scalars['ID']['output'];
  /** True for the AI assistant's user, which writes assistant replies. */
  isAssistant: Scalars['Boolean']['output'];
  /** Unique handle (3 to 32 letters, digits or underscores; unique regardless of case). */
  username: Scalars['String']['output'];
};

export type WithIndex<TObject> = TObject & Record<string, any>;
export type ResolversObject<TObject> = WithIndex<TObject>;

export type ResolverTypeWrapper<T> = Promise<T> | T;


export type ResolverWithResolve<TResult, TParent, TContext, TArgs> = {
  resolve: ResolverFn<TResult, TParent, TContext, TArgs>;
};
export type Resolver<TResult, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> = ResolverFn<TResult, TParent, TContext, TArgs> | ResolverWithResolve<TResult, TParent, TContext, TArgs>;

export type ResolverFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => Promise<TResult> | TResult;

export type SubscriptionSubscribeFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => AsyncIterable<TResult> | Promise<AsyncIterable<TResult>>;

export type SubscriptionResolveFn<TResult, TParent, TContext, TArgs> = (
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => TResult | Promise<TResult>;

export interface SubscriptionSubscriberObject<TResult, TKey extends string, TParent, TContext, TArgs> {
  subscribe: SubscriptionSubscribeFn<{ [key in TKey]: TResult }, TParent, TContext, TArgs>;
  resolve?: SubscriptionResolveFn<TResult, { [key in TKey]: TResult }, TContext, TArgs>;
}

export interface SubscriptionResolverObject<TResult, TParent, TContext, TArgs> {
  subscribe: SubscriptionSubscribeFn<any, TParent, TContext, TArgs>;
  resolve: SubscriptionResolveFn<TResult, any, TContext, TArgs>;
}

export type SubscriptionObject<TResult, TKey extends string, TParent, TContext, TArgs> =
  | SubscriptionSubscriberObject<TResult, TKey, TParent, TContext, TArgs>
  | SubscriptionResolverObject<TResult, TParent, TContext, TArgs>;

export type SubscriptionResolver<TResult, TKey extends string, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> =
  | ((...args: any[]) => SubscriptionObject<TResult, TKey, TParent, TContext, TArgs>)
  | SubscriptionObject<TResult, TKey, TParent, TContext, TArgs>;

export type TypeResolveFn<TTypes, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>> = (
  parent: TParent,
  context: TContext,
  info: GraphQLResolveInfo
) => Maybe<TTypes> | Promise<Maybe<TTypes>>;

export type IsTypeOfResolverFn<T = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>> = (obj: T, context: TContext, info: GraphQLResolveInfo) => boolean | Promise<boolean>;

export type NextResolverFn<T> = () => Promise<T>;

export type DirectiveResolverFn<TResult = Record<PropertyKey, never>, TParent = Record<PropertyKey, never>, TContext = Record<PropertyKey, never>, TArgs = Record<PropertyKey, never>> = (
  next: NextResolverFn<TResult>,
  parent: TParent,
  args: TArgs,
  context: TContext,
  info: GraphQLResolveInfo
) => TResult | Promise<TResult>;



/** Mapping of union types */
export type ResolversUnionTypes<_RefType extends Record<string, unknown>> = ResolversObject<{
  MyEvent:
    | ( Omit<AddedToRoom, 'room'> & { room: _RefType['Room'] } )
    | ( Omit<Mentioned, 'message'> & { message: _RefType['Message'] } )
    | ( Omit<ReadStateChanged, 'room'> & { room: _RefType['Room'] } )
    | ( RemovedFromRoom )
    | ( Omit<RoomActivity, 'message' | 'room'> & { message: _RefType['Message'], room: _RefType['Room'] } )
  ;
  RoomEvent:
    | ( AssistantDelta )
    | ( MemberChangedModel )
    | ( Omit<MessageAdded, 'message'> & { message: _RefType['Message'] } )
    | ( Omit<MessageUpdated, 'message'> & { message: _RefType['Message'] } )
    | ( PresenceChangedModel )
    | ( TypingChangedModel )
  ;
}>;


/** Mapping between all available schema types and the resolvers types */
export type ResolversTypes = ResolversObject<{
  AddedToRoom: ResolverTypeWrapper<Omit<AddedToRoom, 'room'> & { room: ResolversTypes['Room'] }>;
  AskAssistantInput: AskAssistantInput;
  AssistantDelta: ResolverTypeWrapper<AssistantDelta>;
  AuthPayload: ResolverTypeWrapper<Omit<AuthPayload, 'user'> & { user: ResolversTypes['User'] }>;
  Boolean: ResolverTypeWrapper<Scalars['Boolean']['output']>;
  CreateRoomInput: CreateRoomInput;
  DateTime: ResolverTypeWrapper<Scalars['DateTime']['output']>;
  EditMessageInput: EditMessageInput;
  ID: ResolverTypeWrapper<Scalars['ID']['output']>;
  Int: ResolverTypeWrapper<Scalars['Int']['output']>;
  LogInInput: LogInInput;
  Member: ResolverTypeWrapper<MemberModel>;
  MemberChanged: ResolverTypeWrapper<MemberChangedModel>;
  MemberConnection: ResolverTypeWrapper<Omit<MemberConnection, 'edges'> & { edges: Array<ResolversTypes['MemberEdge']> }>;
  MemberEdge: ResolverTypeWrapper<Omit<MemberEdge, 'node'> & { node: ResolversTypes['Member'] }>;
  Mentioned: ResolverTypeWrapper<Omit<Mentioned, 'message'> & { message: ResolversTypes['Message'] }>;
  Message: ResolverTypeWrapper<MessageModel>;
  MessageAdded: ResolverTypeWrapper<Omit<MessageAdded, 'message'> & { message: ResolversTypes['Message'] }>;
  MessageConnection: ResolverTypeWrapper<Omit<MessageConnection, 'edges'> & { edges: Array<ResolversTypes['MessageEdge']> }>;
  MessageEdge: ResolverTypeWrapper<Omit<MessageEdge, 'node'> & { node: ResolversTypes['Message'] }>;
  MessageStatus: MessageStatus;
  MessageUpdated: ResolverTypeWrapper<Omit<MessageUpdated, 'message'> & { message: ResolversTypes['Message'] }>;
  Mutation: ResolverTypeWrapper<Record<PropertyKey, never>>;
  MyEvent: ResolverTypeWrapper<ResolversUnionTypes<ResolversTypes>['MyEvent']>;
  PageInfo: ResolverTypeWrapper<PageInfo>;
  PresenceChanged: ResolverTypeWrapper<PresenceChangedModel>;
  Query: ResolverTypeWrapper<Record<PropertyKey, never>>;
  Reaction: ResolverTypeWrapper<ReactionGroup>;
  ReactionInput: ReactionInput;
  ReadStateChanged: ResolverTypeWrapper<Omit<ReadStateChanged, 'room'> & { room: ResolversTypes['Room'] }>;
  RemovedFromRoom: ResolverTypeWrapper<RemovedFromRoom>;
  Role: Role;
  Room: ResolverTypeWrapper<RoomModel>;
  RoomActivity: ResolverTypeWrapper<Omit<RoomActivity, 'message' | 'room'> & { message: ResolversTypes['Message'], room: ResolversTypes['Room'] }>;
  RoomConnection: ResolverTypeWrapper<Omit<RoomConnection, 'edges'> & { edges: Array<ResolversTypes['RoomEdge']> }>;
  RoomEdge: ResolverTypeWrapper<Omit<RoomEdge, 'node'> & { node: ResolversTypes['Room'] }>;
  RoomEvent: ResolverTypeWrapper<ResolversUnionTypes<ResolversTypes>['RoomEvent']>;
  RoomKind: RoomKind;
  SendMessageInput: SendMessageInput;
  SignUpInput: SignUpInput;
  String: ResolverTypeWrapper<Scalars['String']['output']>;
  Subscription: ResolverTypeWrapper<Record<PropertyKey, never>>;
  TypingChanged: ResolverTypeWrapper<TypingChangedModel>;
  UpdateRoomInput: UpdateRoomInput;
  User: ResolverTypeWrapper<UserEntity>;
}>;

/** Mapping between all available schema types and the resolvers parents */
export type ResolversParentTypes = ResolversObject<{
  AddedToRoom: Omit<AddedToRoom, 'room'> & { room: ResolversParentTypes['Room'] };
  AskAssistantInput: AskAssistantInput;
  AssistantDelta: AssistantDelta;
  AuthPayload: Omit<AuthPayload, 'user'> & { user: ResolversParentTypes['User'] };
  Boolean: Scalars['Boolean']['output'];
  CreateRoomInput: CreateRoomInput;
  DateTime: Scalars['DateTime']['output'];
  EditMessageInput: EditMessageInput;
  ID: Scalars['ID']['output'];
  Int: Scalars['Int']['output'];
  LogInInput: LogInInput;
  Member: MemberModel;
  MemberChanged: MemberChangedModel;
  MemberConnection: Omit<MemberConnection, 'edges'> & { edges: Array<ResolversParentTypes['MemberEdge']> };
  MemberEdge: Omit<MemberEdge, 'node'> & { node: ResolversParentTypes['Member'] };
  Mentioned: Omit<Mentioned, 'message'> & { message: ResolversParentTypes['Message'] };
  Message: MessageModel;
  MessageAdded: Omit<MessageAdded, 'message'> & { message: ResolversParentTypes['Message'] };
  MessageConnection: Omit<MessageConnection, 'edges'> & { edges: Array<ResolversParentTypes['MessageEdge']> };
  MessageEdge: Omit<MessageEdge, 'node'> & { node: ResolversParentTypes['Message'] };
  MessageUpdated: Omit<MessageUpdated, 'message'> & { message: ResolversParentTypes['Message'] };
  Mutation: Record<PropertyKey, never>;
  MyEvent: ResolversUnionTypes<ResolversParentTypes>['MyEvent'];
  PageInfo: PageInfo;
  PresenceChanged: PresenceChangedModel;
  Query: Record<PropertyKey, never>;
  Reaction: ReactionGroup;
  ReactionInput: ReactionInput;
  ReadStateChanged: Omit<ReadStateChanged, 'room'> & { room: ResolversParentTypes['Room'] };
  RemovedFromRoom: RemovedFromRoom;
  Room: RoomModel;
  RoomActivity: Omit<RoomActivity, 'message' | 'room'> & { message: ResolversParentTypes['Message'], room: ResolversParentTypes['Room'] };
  RoomConnection: Omit<RoomConnection, 'edges'> & { edges: Array<ResolversParentTypes['RoomEdge']> };
  RoomEdge: Omit<RoomEdge, 'node'> & { node: ResolversParentTypes['Room'] };
  RoomEvent: ResolversUnionTypes<ResolversParentTypes>['RoomEvent'];
  SendMessageInput: SendMessageInput;
  SignUpInput: SignUpInput;
  String: Scalars['String']['output'];
  Subscription: Record<PropertyKey, never>;
  TypingChanged: TypingChangedModel;
  UpdateRoomInput: UpdateRoomInput;
  User: UserEntity;
}>;

export type AddedToRoomResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['AddedToRoom'] = ResolversParentTypes['AddedToRoom']> = ResolversObject<{
  room?: Resolver<ResolversTypes['Room'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type AssistantDeltaResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['AssistantDelta'] = ResolversParentTypes['AssistantDelta']> = ResolversObject<{
  index?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  messageId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  text?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type AuthPayloadResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['AuthPayload'] = ResolversParentTypes['AuthPayload']> = ResolversObject<{
  expiresAt?: Resolver<ResolversTypes['DateTime'], ParentType, ContextType>;
  refreshToken?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  token?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  user?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
}>;

export interface DateTimeScalarConfig extends GraphQLScalarTypeConfig<ResolversTypes['DateTime'], any> {
  name: 'DateTime';
}

export type MemberResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Member'] = ResolversParentTypes['Member']> = ResolversObject<{
  online?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  role?: Resolver<ResolversTypes['Role'], ParentType, ContextType>;
  user?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
}>;

export type MemberChangedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MemberChanged'] = ResolversParentTypes['MemberChanged']> = ResolversObject<{
  role?: Resolver<Maybe<ResolversTypes['Role']>, ParentType, ContextType>;
  roomId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  user?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type MemberConnectionResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MemberConnection'] = ResolversParentTypes['MemberConnection']> = ResolversObject<{
  edges?: Resolver<Array<ResolversTypes['MemberEdge']>, ParentType, ContextType>;
  pageInfo?: Resolver<ResolversTypes['PageInfo'], ParentType, ContextType>;
}>;

export type MemberEdgeResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MemberEdge'] = ResolversParentTypes['MemberEdge']> = ResolversObject<{
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  node?: Resolver<ResolversTypes['Member'], ParentType, ContextType>;
}>;

export type MentionedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Mentioned'] = ResolversParentTypes['Mentioned']> = ResolversObject<{
  message?: Resolver<ResolversTypes['Message'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type MessageResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Message'] = ResolversParentTypes['Message']> = ResolversObject<{
  author?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
  body?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  clientId?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  createdAt?: Resolver<ResolversTypes['DateTime'], ParentType, ContextType>;
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  deleted?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  deltaCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  editedAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  id?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  lastReplyAt?: Resolver<Maybe<ResolversTypes['DateTime']>, ParentType, ContextType>;
  mentions?: Resolver<Array<ResolversTypes['User']>, ParentType, ContextType>;
  parent?: Resolver<Maybe<ResolversTypes['Message']>, ParentType, ContextType>;
  reactions?: Resolver<Array<ResolversTypes['Reaction']>, ParentType, ContextType>;
  replyCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  room?: Resolver<ResolversTypes['Room'], ParentType, ContextType>;
  seq?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  status?: Resolver<ResolversTypes['MessageStatus'], ParentType, ContextType>;
  statusReason?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  version?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
}>;

export type MessageAddedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MessageAdded'] = ResolversParentTypes['MessageAdded']> = ResolversObject<{
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  message?: Resolver<ResolversTypes['Message'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type MessageConnectionResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MessageConnection'] = ResolversParentTypes['MessageConnection']> = ResolversObject<{
  edges?: Resolver<Array<ResolversTypes['MessageEdge']>, ParentType, ContextType>;
  pageInfo?: Resolver<ResolversTypes['PageInfo'], ParentType, ContextType>;
}>;

export type MessageEdgeResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MessageEdge'] = ResolversParentTypes['MessageEdge']> = ResolversObject<{
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  node?: Resolver<ResolversTypes['Message'], ParentType, ContextType>;
}>;

export type MessageUpdatedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MessageUpdated'] = ResolversParentTypes['MessageUpdated']> = ResolversObject<{
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  message?: Resolver<ResolversTypes['Message'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type MutationResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Mutation'] = ResolversParentTypes['Mutation']> = ResolversObject<{
  addMember?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationAddMemberArgs, 'roomId' | 'userId'>>;
  addReaction?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationAddReactionArgs, 'input'>>;
  askAssistant?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationAskAssistantArgs, 'input'>>;
  cancelAssistant?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationCancelAssistantArgs, 'messageId'>>;
  createRoom?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationCreateRoomArgs, 'input'>>;
  deleteMessage?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationDeleteMessageArgs, 'messageId'>>;
  editMessage?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationEditMessageArgs, 'input'>>;
  joinRoom?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationJoinRoomArgs, 'roomId'>>;
  leaveRoom?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType, RequireFields<MutationLeaveRoomArgs, 'roomId'>>;
  logIn?: Resolver<ResolversTypes['AuthPayload'], ParentType, ContextType, RequireFields<MutationLogInArgs, 'input'>>;
  logOut?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType, RequireFields<MutationLogOutArgs, 'allSessions'>>;
  markRead?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationMarkReadArgs, 'cursor' | 'roomId'>>;
  openDirectRoom?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationOpenDirectRoomArgs, 'userId'>>;
  refreshSession?: Resolver<ResolversTypes['AuthPayload'], ParentType, ContextType, RequireFields<MutationRefreshSessionArgs, 'refreshToken'>>;
  removeMember?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationRemoveMemberArgs, 'roomId' | 'userId'>>;
  removeReaction?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationRemoveReactionArgs, 'input'>>;
  sendMessage?: Resolver<ResolversTypes['Message'], ParentType, ContextType, RequireFields<MutationSendMessageArgs, 'input'>>;
  setMemberRole?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationSetMemberRoleArgs, 'role' | 'roomId' | 'userId'>>;
  setTyping?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType, RequireFields<MutationSetTypingArgs, 'roomId' | 'typing'>>;
  signUp?: Resolver<ResolversTypes['AuthPayload'], ParentType, ContextType, RequireFields<MutationSignUpArgs, 'input'>>;
  updateRoom?: Resolver<ResolversTypes['Room'], ParentType, ContextType, RequireFields<MutationUpdateRoomArgs, 'input'>>;
}>;

export type MyEventResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['MyEvent'] = ResolversParentTypes['MyEvent']> = ResolversObject<{
  __resolveType: TypeResolveFn<'AddedToRoom' | 'Mentioned' | 'ReadStateChanged' | 'RemovedFromRoom' | 'RoomActivity', ParentType, ContextType>;
}>;

export type PageInfoResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['PageInfo'] = ResolversParentTypes['PageInfo']> = ResolversObject<{
  endCursor?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  hasNextPage?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  hasPreviousPage?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  startCursor?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
}>;

export type PresenceChangedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['PresenceChanged'] = ResolversParentTypes['PresenceChanged']> = ResolversObject<{
  online?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  roomId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  user?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type QueryResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Query'] = ResolversParentTypes['Query']> = ResolversObject<{
  me?: Resolver<Maybe<ResolversTypes['User']>, ParentType, ContextType>;
  messages?: Resolver<ResolversTypes['MessageConnection'], ParentType, ContextType, RequireFields<QueryMessagesArgs, 'roomId'>>;
  publicRooms?: Resolver<ResolversTypes['RoomConnection'], ParentType, ContextType, Partial<QueryPublicRoomsArgs>>;
  room?: Resolver<Maybe<ResolversTypes['Room']>, ParentType, ContextType, RequireFields<QueryRoomArgs, 'id'>>;
  rooms?: Resolver<ResolversTypes['RoomConnection'], ParentType, ContextType, Partial<QueryRoomsArgs>>;
  searchMessages?: Resolver<ResolversTypes['MessageConnection'], ParentType, ContextType, RequireFields<QuerySearchMessagesArgs, 'query'>>;
  users?: Resolver<Array<ResolversTypes['User']>, ParentType, ContextType, RequireFields<QueryUsersArgs, 'query'>>;
}>;

export type ReactionResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Reaction'] = ResolversParentTypes['Reaction']> = ResolversObject<{
  count?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  emoji?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  viewerReacted?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
}>;

export type ReadStateChangedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['ReadStateChanged'] = ResolversParentTypes['ReadStateChanged']> = ResolversObject<{
  room?: Resolver<ResolversTypes['Room'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type RemovedFromRoomResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['RemovedFromRoom'] = ResolversParentTypes['RemovedFromRoom']> = ResolversObject<{
  roomId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type RoomResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Room'] = ResolversParentTypes['Room']> = ResolversObject<{
  assistantEnabled?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  assistantInstructions?: Resolver<Maybe<ResolversTypes['String']>, ParentType, ContextType>;
  id?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  kind?: Resolver<ResolversTypes['RoomKind'], ParentType, ContextType>;
  lastMessage?: Resolver<Maybe<ResolversTypes['Message']>, ParentType, ContextType>;
  lastReadSeq?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  lastSeq?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  memberCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  members?: Resolver<ResolversTypes['MemberConnection'], ParentType, ContextType, Partial<RoomMembersArgs>>;
  mentionCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  name?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  unreadCount?: Resolver<ResolversTypes['Int'], ParentType, ContextType>;
  viewerRole?: Resolver<Maybe<ResolversTypes['Role']>, ParentType, ContextType>;
}>;

export type RoomActivityResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['RoomActivity'] = ResolversParentTypes['RoomActivity']> = ResolversObject<{
  message?: Resolver<ResolversTypes['Message'], ParentType, ContextType>;
  room?: Resolver<ResolversTypes['Room'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type RoomConnectionResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['RoomConnection'] = ResolversParentTypes['RoomConnection']> = ResolversObject<{
  edges?: Resolver<Array<ResolversTypes['RoomEdge']>, ParentType, ContextType>;
  pageInfo?: Resolver<ResolversTypes['PageInfo'], ParentType, ContextType>;
}>;

export type RoomEdgeResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['RoomEdge'] = ResolversParentTypes['RoomEdge']> = ResolversObject<{
  cursor?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  node?: Resolver<ResolversTypes['Room'], ParentType, ContextType>;
}>;

export type RoomEventResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['RoomEvent'] = ResolversParentTypes['RoomEvent']> = ResolversObject<{
  __resolveType: TypeResolveFn<'AssistantDelta' | 'MemberChanged' | 'MessageAdded' | 'MessageUpdated' | 'PresenceChanged' | 'TypingChanged', ParentType, ContextType>;
}>;

export type SubscriptionResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['Subscription'] = ResolversParentTypes['Subscription']> = ResolversObject<{
  messageAdded?: SubscriptionResolver<ResolversTypes['Message'], "messageAdded", ParentType, ContextType, RequireFields<SubscriptionMessageAddedArgs, 'roomId'>>;
  myEvents?: SubscriptionResolver<ResolversTypes['MyEvent'], "myEvents", ParentType, ContextType>;
  roomEvents?: SubscriptionResolver<ResolversTypes['RoomEvent'], "roomEvents", ParentType, ContextType, RequireFields<SubscriptionRoomEventsArgs, 'roomId'>>;
}>;

export type TypingChangedResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['TypingChanged'] = ResolversParentTypes['TypingChanged']> = ResolversObject<{
  roomId?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  typing?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  user?: Resolver<ResolversTypes['User'], ParentType, ContextType>;
  __isTypeOf?: IsTypeOfResolverFn<ParentType, ContextType>;
}>;

export type UserResolvers<ContextType = GraphQLContext, ParentType extends ResolversParentTypes['User'] = ResolversParentTypes['User']> = ResolversObject<{
  displayName?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
  id?: Resolver<ResolversTypes['ID'], ParentType, ContextType>;
  isAssistant?: Resolver<ResolversTypes['Boolean'], ParentType, ContextType>;
  username?: Resolver<ResolversTypes['String'], ParentType, ContextType>;
}>;

export type Resolvers<ContextType = GraphQLContext> = ResolversObject<{
  AddedToRoom?: AddedToRoomResolvers<ContextType>;
  AssistantDelta?: AssistantDeltaResolvers<ContextType>;
  AuthPayload?: AuthPayloadResolvers<ContextType>;
  DateTime?: GraphQLScalarType;
  Member?: MemberResolvers<ContextType>;
  MemberChanged?: MemberChangedResolvers<ContextType>;
  MemberConnection?: MemberConnectionResolvers<ContextType>;
  MemberEdge?: MemberEdgeResolvers<ContextType>;
  Mentioned?: MentionedResolvers<ContextType>;
  Message?: MessageResolvers<ContextType>;
  MessageAdded?: MessageAddedResolvers<ContextType>;
  MessageConnection?: MessageConnectionResolvers<ContextType>;
  MessageEdge?: MessageEdgeResolvers<ContextType>;
  MessageUpdated?: MessageUpdatedResolvers<ContextType>;
  Mutation?: MutationResolvers<ContextType>;
  MyEvent?: MyEventResolvers<ContextType>;
  PageInfo?: PageInfoResolvers<ContextType>;
  PresenceChanged?: PresenceChangedResolvers<ContextType>;
  Query?: QueryResolvers<ContextType>;
  Reaction?: ReactionResolvers<ContextType>;
  ReadStateChanged?: ReadStateChangedResolvers<ContextType>;
  RemovedFromRoom?: RemovedFromRoomResolvers<ContextType>;
  Room?: RoomResolvers<ContextType>;
  RoomActivity?: RoomActivityResolvers<ContextType>;
  RoomConnection?: RoomConnectionResolvers<ContextType>;
  RoomEdge?: RoomEdgeResolvers<ContextType>;
  RoomEvent?: RoomEventResolvers<ContextType>;
  Subscription?: SubscriptionResolvers<ContextType>;
  TypingChanged?: TypingChangedResolvers<ContextType>;
  User?: UserResolvers<ContextType>;
}>;

