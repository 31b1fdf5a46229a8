import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type Role = 'OWNER' | 'ADMIN' | 'MEMBER';

/** A user's place in a room; `id` grows with each join and orders the viewer's room list. */
@Entity('memberships')
export class MembershipEntity {
  @PrimaryGeneratedColumn('identity', { generatedIdentity: 'ALWAYS' })
  id: number;

  @Column('uuid', { name: 'room_id' })
  roomId: string;

  @Column('uuid', { name: 'user_id' })
  userId: string;

  @Column('text')
  role: Role;

  /** The seq of the newest message the user has read (never moves back). */
  @Column('integer', { name: 'last_read_seq', default: 0 })
  lastReadSeq: number;

  @CreateDateColumn({ name: 'joined_at', type: 'timestamptz' })
  joinedAt: Date;
}
