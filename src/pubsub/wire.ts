import type { MessageStatus, ReactionGroup } from '../db/entities/message';

type Instant = Date | string;

/** A message as it travels between instances (dates as ISO strings, so JSON keeps them). */
export interface MessageWire {
  id: string;
  roomId: string;
  seq: number;
  authorId: string;
  body: string;
  parentId: string | null;
  clientId: string | null;
  status: MessageStatus;
  statusReason: string | null;
  deltaCount: number;
  createdAt: string;
  /** The room's change number of the insert. */
  createdChange: number;
  /** The room's change number of the latest change: this state's place in the change log. */
  changeSeq: number;
  editedAt: string | null;
  deletedAt: string | null;
  reactions: ReactionGroup[];
  replyCount: number;
  lastReplyAt: string | null;
  /** The ids of the members it mentions. */
  mentions: string[];
}

/** A message as resolvers see it: a database row, or one that arrived over pub/sub (dates as strings). */
export type MessageModel = Omit<MessageWire, 'createdAt' | 'editedAt' | 'deletedAt' | 'lastReplyAt'> & {
  createdAt: Instant;
  editedAt: Instant | null;
  deletedAt: Instant | null;
  lastReplyAt: Instant | null;
};

const iso = (d: Instant | null): string | null => (d instanceof Date ? d.toISOString() : d);

/** A message in the form that crosses pub/sub: everything a subscriber needs, nothing private. */
export function toWire(m: MessageModel): MessageWire {
  return {
    id: m.id,
    roomId: m.roomId,
    seq: m.seq,
    authorId: m.authorId,
    body: m.body,
    parentId: m.parentId,
    clientId: m.clientId,
    status: m.status,
    statusReason: m.statusReason,
    deltaCount: m.deltaCount,
    createdAt: iso(m.createdAt)!,
    createdChange: m.createdChange,
    changeSeq: m.changeSeq,
    editedAt: iso(m.editedAt),
    deletedAt: iso(m.deletedAt),
    reactions: m.reactions,
    replyCount: m.replyCount,
    lastReplyAt: iso(m.lastReplyAt),
    mentions: m.mentions,
  };
}
