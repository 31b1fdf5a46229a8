/** How many messages' newest states the link remembers (the least recently seen are forgotten first). */
const REMEMBERED = 5000;

type Json = unknown;
type Message = Record<string, Json> & { __typename: 'Message'; id: string; version: number };

const isMessage = (value: Json): value is Message =>
  typeof value === 'object' && value !== null && (value as Message).__typename === 'Message' && typeof (value as Message).id === 'string' && typeof (value as Message).version === 'number';

const pieces = (m: Message) => (typeof m.deltaCount === 'number' ? m.deltaCount : 0);

/** Whether `a` is an older state of its message than `b` (`Message.version`; at one version, fewer streamed pieces). */
const older = (a: Message, b: Message) => a.version < b.version || (a.version === b.version && pieces(a) < pieces(b));

/** Whether two states of a message were read by the same selection (the same fields, recursively). */
function sameShape(a: Json, b: Json): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return (typeof a === 'object' && a !== null) === (typeof b === 'object' && b !== null);
  if (Array.isArray(a) || Array.isArray(b)) return Array.isArray(a) && Array.isArray(b) && (a.length === 0 || b.length === 0 || sameShape(a[0], b[0]));
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => k in b && sameShape((a as Record<string, Json>)[k], (b as Record<string, Json>)[k]));
}

/**
 * The newest state of each message seen in the link's results, so that an older one never
 * replaces it in the application's cache: one message comes by several subscriptions in any
 * order — `myEvents`' `RoomActivity` carries it as it was sent, `roomEvents` its edits, deletions
 * and reactions — and the cache keeps whichever came last. A state older than one seen
 * (`Message.version`) is given as that newest one where both were read by the same selection (the
 * kit's documents all read `MessageFields`); another selection passes as it came.
 */
export class NewestMessages {
  private readonly seen = new Map<string, Message>();

  constructor(private readonly remembered = REMEMBERED) {}

  /** `result` with each message older than one seen replaced by the newest (a copy where anything changed). */
  apply<R extends { data?: Json; errors?: unknown }>(result: R): R {
    if (result.data === undefined || result.data === null) return result;
    const data = this.fresh(result.data);
    return data === result.data ? result : { ...result, data };
  }

  private fresh(value: Json): Json {
    if (typeof value !== 'object' || value === null) return value;
    if (Array.isArray(value)) {
      const items = value.map((item) => this.fresh(item));
      return items.some((item, i) => item !== value[i]) ? items : value;
    }
    if (isMessage(value)) {
      const known = this.seen.get(value.id);
      if (known && older(value, known)) return sameShape(value, known) ? known : value;
      this.seen.delete(value.id); // the most recently seen last
      this.seen.set(value.id, value);
      if (this.seen.size > this.remembered) this.seen.delete(this.seen.keys().next().value as string);
    }
    let copy: Record<string, Json> | undefined;
    for (const [key, child] of Object.entries(value)) {
      const now = this.fresh(child);
      if (now !== child) (copy ??= { ...value })[key] = now;
    }
    return copy ?? value;
  }
}
