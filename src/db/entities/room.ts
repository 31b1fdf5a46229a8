import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type RoomKind = 'PUBLIC' | 'PRIVATE' | 'DIRECT';

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

  /** When the room's send budget window began (`SENDS_PER_ROOM_PER_10S`; `MessageStore.insert` keeps it). */
  @Column('timestamptz', { name: 'send_window_started_at', nullable: true, select: false })
  sendWindowStartedAt: Date | null;

  /** Sends the room took in that window. */
  @Column('integer', { name: 'send_window_count', default: 0, select: false })
  sendWindowCount: number;

  /** For a DIRECT room: its two users' ids in order, unique, so a pair has one room. */
  @Column('text', { name: 'direct_key', nullable: true, select: false })
  directKey: string | null;

  @Column('uuid', { name: 'created_by' })
  createdBy: string;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt: Date;
}
