import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type RoomKind = 'PUBLIC' | 'PRIVATE';

/** A room; its row is the lock that orders senders and changes: `lastSeq` numbers messages, `lastChange` changes. */
@Entity('rooms')
export class RoomEntity {
  @PrimaryGeneratedColumn('uuid')
  id: string;

  @Column('text')
  name: string;

  @Column('text')
  kind: RoomKind;

  @Column('boolean', { name: 'assistant_enabled', default: false })
  assistantEnabled: boolean;

  @Column('text', { name: 'assistant_instructions', nullable: true })
  assistantInstructions: string | null;

  @Column('integer', { name: 'last_seq', default: 0 })
  lastSeq: number;

  /** The number of the room's latest change to its messages (the change log of docs/guarantees.md). */
  @Column('integer', { name: 'last_change', default: 0 })
  lastChange: number;

  @Column('uuid', { name: 'created_by' })
  createdBy: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
