import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type MessageStatus = 'COMPLETE' | 'STREAMING' | 'FAILED';

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

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt: Date;
}
