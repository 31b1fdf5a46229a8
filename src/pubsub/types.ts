import type { Role } from '../db/entities/membership';
import type { MessageWire } from './wire';

/**
 * What a room's hub takes: from the room's topic, and its new messages from the activity topic
 * (`MessageStore.publish` publishes each once). Topic names come only from `roomTopic`.
 */
export type RoomSignal =
  /** A message at its latest change (`message.changeSeq`): its insert (published on the activity topic), or a later change. */
  | { kind: 'change'; message: MessageWire }
  | { kind: 'delta'; messageId: string; index: number; text: string }
  /**
   * A user joined, was added, changed role (`role`), or left or was removed (`role: null`).
   * `change`: its number (`membership_changes`), in commit order for any one member; none from a
   * hub's own timed check.
   */
  | { kind: 'membership'; userId: string; role: Role | null; change?: number }
  /** Ephemeral (docs/guarantees.md, guarantee 11): never in the change log, never replayed. */
  | { kind: 'typing'; userId: string; typing: boolean }
  | { kind: 'presence'; userId: string; online: boolean };

/** What is published on a user's own topic: changes of their rooms that concern only them. */
export type UserSignal =
  | { kind: 'added'; roomId: string; lastReadSeq: number }
  | { kind: 'removed'; roomId: string }
  /**
   * The user's read position moved to `lastReadSeq`; or, with `mentionsAt` (and `lastReadSeq` 0),
   * an edit or a deletion of message `mentionsAt` mentions them where it did not, or no longer does
   * (an instance that does not know `mentionsAt` tells the read state as it is: what it did before).
   */
  | { kind: 'read'; roomId: string; lastReadSeq: number; mentionsAt?: number };

/** A new message of any room, for the viewers' own feeds (`myEvents`). */
export interface Activity {
  message: MessageWire;
}

/** Stops a streaming assistant reply, wherever it streams. */
export interface AssistantControl {
  kind: 'cancel';
  messageId: string;
}

/** A topic and the payload it carries, so publish and subscribe cannot disagree. */
export interface Topic<T> {
  readonly name: string;
  /** Never set; carries the payload type. */
  readonly payload?: T;
}

/** The one place topic names are made. */
export const roomTopic = (roomId: string): Topic<RoomSignal> => ({ name: `room:${roomId}` });
export const assistantControlTopic: Topic<AssistantControl> = { name: 'assistant:control' };
export const userTopic = (userId: string): Topic<UserSignal> => ({ name: `user:${userId}` });
/**
 * Every new message of every room, once per instance: for its room's hub (`HubRegistry`) and the
 * viewers' own feeds (`src/chat/activity-router.ts`).
 */
export const activityTopic: Topic<Activity> = { name: 'activity' };
/** A session was revoked (logOut, a reused refresh token): every instance closes its sockets. */
export const sessionRevokedTopic: Topic<{ sessionId: string }> = { name: 'session:revoked' };

/**
 * The small interface behind which Redis and the in-memory bus sit. Delivery is at most once:
 * callers treat a signal as a wake-up and keep PostgreSQL as the truth.
 */
export interface PubSub {
  /** Publishes; rejects promptly when the bus is unreachable (never queues behind a dead link). */
  publish<T>(topic: Topic<T>, payload: T): Promise<void>;
  /** Subscribes a handler; resolves to the function that unsubscribes it. */
  subscribe<T>(topic: Topic<T>, handler: (payload: T) => void): Promise<() => Promise<void>>;
  /** Calls the listener after the bus reconnected (signals may have been lost meanwhile). */
  onReconnect(listener: () => void): () => void;
  /** Whether signals reach this instance now (Redis: its subscriber's connection is up and has every channel). While not, signals published may be lost here. */
  readonly connected: boolean;
  /** True when the bus answers. */
  ping(): Promise<boolean>;
  /** Resolves true once connected, false after `timeoutMs` (the app starts anyway and heals later). */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/**
 * Unsubscribes once `subscription` settles, without waiting for it: a Redis that is down holds a
 * subscription until it is back, and stopping must not wait for that. A failed subscription has
 * nothing to undo.
 */
export function unsubscribeWhenSettled(subscription: Promise<(() => Promise<void>) | undefined> | undefined): void {
  void subscription?.then(
    (off) => off?.().catch(() => undefined),
    () => undefined,
  );
}
