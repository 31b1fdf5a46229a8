/** `TypingChanged` as resolvers see it (the user is loaded by id). */
export interface TypingChangedModel {
  roomId: string;
  userId: string;
  typing: boolean;
}

/** `PresenceChanged` as resolvers see it (the user is loaded by id). */
export interface PresenceChangedModel {
  roomId: string;
  userId: string;
  online: boolean;
}
