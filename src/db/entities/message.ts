import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type MessageStatus = 'COMPLETE' | 'STREAMING' | 'FAILED' | 'CANCELLED';

/** One emoji's reactions on a message: who reacted, oldest first. */
export interface ReactionGroup {
  emoji: string;
  userIds: string[];
}

/**
 * A message; `(room_id, seq)` is unique and gapless, `(room_id, author_id, client_id)` dedupes
 * retries, and `(room_id, change_seq)` places its latest change in the room's change log.
 */
@Entity('messages')
export class MessageEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column('uuid', { name: 'room_id' })
  roomId: string;

  @Column('integer')
  seq: number;

  @Column('uuid', { name: 'author_id' })
  authorId: string;

  @Column('text')
  body: string;

  @Column('uuid', { name: 'parent_id', nullable: true })
  parentId: string | null;

  @Column('text', { name: 'client_id', nullable: true })
  clientId: string | null;

  @Column('text', { default: 'COMPLETE' })
  status: MessageStatus;

  /** Why an assistant reply ended FAILED or CANCELLED. */
  @Column('text', { name: 'status_reason', nullable: true })
  statusReason: string | null;

  /** How many streamed deltas `body` holds (assistant replies). */
  @Column('integer', { name: 'delta_count', default: 0 })
  deltaCount: number;

  /** For an assistant reply: the message it answers (one reply per asked message). */
  @Column('uuid', { name: 'asked_message_id', nullable: true })
  askedMessageId: string | null;

  /** For a streaming assistant reply: the server instance streaming it. */
  @Column('text', { name: 'stream_owner', nullable: true, select: false })
  streamOwner: string | null;

  /** For an assistant reply: who asked (may cancel it). */
  @Column('uuid', { name: 'asked_by', nullable: true })
  askedBy: string | null;

  /** The room's change number of this message's insert. */
  @Column('integer', { name: 'created_change' })
  createdChange: number;

  /** The room's change number of this message's latest change (insert, edit, deletion, reaction, reply end). */
  @Column('integer', { name: 'change_seq' })
  changeSeq: number;

  @Column('timestamptz', { name: 'edited_at', nullable: true })
  editedAt: Date | null;

  /** Set when the message was deleted: a tombstone whose body is erased. */
  @Column('timestamptz', { name: 'deleted_at', nullable: true })
  deletedAt: Date | null;

  /** Reactions grouped by emoji, in the order each emoji was first used (kept with each change). */
  @Column('jsonb', { default: () => "'[]'" })
  reactions: ReactionGroup[];

  /** For a thread root: replies that are not deleted. */
  @Column('integer', { name: 'reply_count', default: 0 })
  replyCount: number;

  /** For a thread root: when its newest reply that is not deleted was sent. */
  @Column('timestamptz', { name: 'last_reply_at', nullable: true })
  lastReplyAt: Date | null;

  /** Members of the room the body mentions as `@username` (not its author). */
  @Column('uuid', { array: true, default: () => "'{}'" })
  mentions: string[];

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
