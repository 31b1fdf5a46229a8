import { Column, CreateDateColumn, Entity, PrimaryGeneratedColumn } from 'typeorm';

export type Role = 'OWNER' | 'MEMBER';

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

  @CreateDateColumn({ name: 'joined_at', type: 'timestamptz' })
  joinedAt: Date;
}
