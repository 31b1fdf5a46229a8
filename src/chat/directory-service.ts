import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { RoomEntity, UserEntity } from '../db/entities';
import { badUserInput } from '../errors';
import { isUuid, pageSize, parseInput, searchText, storable } from '../validation';
import { requireViewer } from './access';
import { noCursor } from './cursors';
import type { RoomModel } from './models';
import { connection, type Connection } from './pages';

const DEFAULT_PAGE = 20;
const MAX_PAGE = 50;

/** `text` for a LIKE pattern, with its wildcards taken literally. */
const literal = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

/** Finding people and rooms: for direct rooms, invitations and joining. Signed-in users only. */
export class DirectoryService {
  constructor(private readonly db: DataSource) {}

  /**
   * People whose username or display name starts with `query` (any case; both are indexed for
   * it), an exact username first, then by username; never the assistant. "Any case" is as the
   * database's `lower()` has it, applied to both sides (JavaScript's would differ from it: a
   * database in the C locale lowers ASCII letters only, so `É` would never be found).
   */
  async users(viewer: Viewer | null, query: string, first?: number | null): Promise<UserEntity[]> {
    requireViewer(viewer);
    const text = parseInput(searchText, query, 'query');
    const limit = parseInput(pageSize(MAX_PAGE), first ?? DEFAULT_PAGE, 'first');
    return this.db
      .getRepository(UserEntity)
      .createQueryBuilder('u')
      .where('NOT u.is_assistant')
      .andWhere(`(lower(u.username) LIKE lower(:prefix) OR lower(u.display_name) LIKE lower(:prefix))`, { prefix: `${literal(text)}%` })
      .orderBy('lower(u.username) = lower(:text)', 'DESC')
      .addOrderBy('lower(u.username)', 'ASC')
      .setParameter('text', text)
      .limit(limit)
      .getMany();
  }

  /**
   * PUBLIC rooms, member or not, whose name contains `query` (any case, as the database's
   * `lower()` has it: see `users`), by name, as a Relay page. A cursor holds the name as the
   * database lowered it, so the next page starts where the order it sorted by left off.
   */
  async publicRooms(
    viewer: Viewer | null,
    args: { query?: string | null; first?: number | null; after?: string | null },
  ): Promise<Connection<RoomModel>> {
    requireViewer(viewer);
    const text = args.query == null ? null : parseInput(searchText, args.query, 'query');
    const limit = parseInput(pageSize(MAX_PAGE), args.first ?? DEFAULT_PAGE, 'first');
    const after = noCursor(args.after) ? null : decodeDirectoryCursor(args.after);
    const q = this.db.getRepository(RoomEntity).createQueryBuilder('r').addSelect('lower(r.name)', 'sort_name').where(`r.kind = 'PUBLIC'`);
    if (text) q.andWhere('lower(r.name) LIKE lower(:pattern)', { pattern: `%${literal(text)}%` });
    if (after) q.andWhere('(lower(r.name), r.id) > (:name, :id)', after);
    const { entities, raw } = await q.orderBy('lower(r.name)', 'ASC').addOrderBy('r.id', 'ASC').limit(limit + 1).getRawAndEntities<{ sort_name: string }>();
    const items = entities.map((room, i) => ({ node: room, cursor: encodeDirectoryCursor(raw[i].sort_name, room.id) }));
    return connection(items, limit, { hasPreviousPage: after !== null });
  }
}

function encodeDirectoryCursor(sortName: string, id: string): string {
  return Buffer.from(JSON.stringify(['d1', sortName, id])).toString('base64url');
}

function decodeDirectoryCursor(cursor: string): { name: string; id: string } {
  try {
    const [tag, name, id] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // Only what the database can compare: a UUID, and a name PostgreSQL can hold.
    if (tag === 'd1' && typeof name === 'string' && storable(name) && isUuid(id)) return { name, id };
  } catch {
    // falls through to the error below
  }
  throw badUserInput('after is not a directory cursor', 'after');
}
