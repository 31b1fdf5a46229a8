import { Init1763800000000 } from './1763800000000-init';
import { Assistant1763900000000 } from './1763900000000-assistant';
import { StreamOwner1764000000000 } from './1764000000000-stream-owner';
import { ChangeLog1765000000000 } from './1765000000000-change-log';
import { People1765000000001 } from './1765000000001-people';
import { Sessions1765200000000 } from './1765200000000-sessions';
import { RoomSendWindow1765300000000 } from './1765300000000-room-send-window';
import { ReactionEmoji1765400000000 } from './1765400000000-reaction-emoji';
import { MembershipChanges1765500000000 } from './1765500000000-membership-changes';

/** Every migration, oldest first; run at start on PostgreSQL and PGlite alike. */
export const migrations = [Init1763800000000, Assistant1763900000000, StreamOwner1764000000000, ChangeLog1765000000000, People1765000000001, Sessions1765200000000, RoomSendWindow1765300000000, ReactionEmoji1765400000000, MembershipChanges1765500000000];
