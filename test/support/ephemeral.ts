// roomEvents with typing and presence, shared by the tests of API.md guarantee 11.
import type { Collected, TestUser } from './harness';

export const ROOM_EVENTS = `subscription($roomId: ID!, $after: String) {
  roomEvents(roomId: $roomId, after: $after) {
    __typename
    ... on MessageAdded { cursor message { id body } }
    ... on MessageUpdated { cursor message { id body } }
    ... on TypingChanged { roomId typing user { id username } }
    ... on PresenceChanged { roomId online user { id } }
  }
}`;
export const SET_TYPING = `mutation($roomId: ID!, $typing: Boolean!) { setTyping(roomId: $roomId, typing: $typing) }`;

export type RoomEvent = {
  __typename: string;
  roomId?: string;
  typing?: boolean;
  online?: boolean;
  user?: { id: string };
  message?: { id: string; body: string };
};
export const eventsOf = (sub: Collected): RoomEvent[] => sub.results.map((r) => r.data?.roomEvents);
/** The `typing` values of the TypingChanged events about `user`, in order. */
export const typingOf = (sub: Collected, user: TestUser) =>
  eventsOf(sub).filter((e) => e?.__typename === 'TypingChanged' && e.user?.id === user.id).map((e) => e.typing);
/** The `online` values of the PresenceChanged events about `user`, in order. */
export const presenceOf = (sub: Collected, user: TestUser) =>
  eventsOf(sub).filter((e) => e?.__typename === 'PresenceChanged' && e.user?.id === user.id).map((e) => e.online);
