import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type MessageStatus = 'COMPLETE' | 'STREAMING' | 'FAILED' | 'CANCELLED';

/** A message; `(room_id, seq)` is unique and gapless, `(room_id, author_id, client_id)` dedupes retries. */
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

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
