import { MembershipEntity } from './membership';
import { MessageEntity } from './message';
import { RoomEntity } from './room';
import { UserEntity } from './user';

export { MembershipEntity, MessageEntity, RoomEntity, UserEntity };
export const entities = [UserEntity, RoomEntity, MembershipEntity, MessageEntity];
