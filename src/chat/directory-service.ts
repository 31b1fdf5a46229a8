import type { DataSource } from 'typeorm';
import type { Viewer } from '../auth/tokens';
import { RoomEntity, UserEntity } from '../db/entities';
import { badUserInput } from '../errors';
import { isUuid, pageSize, parseInput, searchText, storable } from '../validation';
import { requireViewer } from './access';
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
   * it), an exact username first, then by username; never the assistant.
   */
  async users(viewer: Viewer | null, query: string, first?: number | null): Promise<UserEntity[]> {
    requireViewer(viewer);
    const text = parseInput(searchText, query, 'query').toLowerCase();
    const limit = parseInput(pageSize(MAX_PAGE), first ?? DEFAULT_PAGE, 'first');
    return this.db
      .getRepository(UserEntity)
      .createQueryBuilder('u')
      .where('NOT u.is_assistant')
      .andWhere(`(lower(u.username) LIKE :prefix OR lower(u.display_name) LIKE :prefix)`, { prefix: `${literal(text)}%` })
      .orderBy('lower(u.username) = :text', 'DESC')
      .addOrderBy('lower(u.username)', 'ASC')
      .setParameter('text', text)
      .limit(limit)
      .getMany();
  }

  /** PUBLIC rooms, member or not, whose name contains `query` (any case), by name, as a Relay page. */
  async publicRooms(
    viewer: Viewer | null,
    args: { query?: string | null; first?: number | null; after?: string | null },
  ): Promise<Connection<RoomModel>> {
    requireViewer(viewer);
    const text = args.query == null ? null : parseInput(searchText, args.query, 'query').toLowerCase();
    const limit = parseInput(pageSize(MAX_PAGE), args.first ?? DEFAULT_PAGE, 'first');
    const after = args.after == null ? null : decodeDirectoryCursor(args.after);
    const q = this.db.getRepository(RoomEntity).createQueryBuilder('r').where(`r.kind = 'PUBLIC'`);
    if (text) q.andWhere('lower(r.name) LIKE :pattern', { pattern: `%${literal(text)}%` });
    if (after) q.andWhere('(lower(r.name), r.id) > (:name, :id)', after);
    const rooms = await q.orderBy('lower(r.name)', 'ASC').addOrderBy('r.id', 'ASC').limit(limit + 1).getMany();
    const items = rooms.map((room) => ({ node: room, cursor: encodeDirectoryCursor(room) }));
    return connection(items, limit, { hasPreviousPage: after !== null });
  }
}

function encodeDirectoryCursor(room: RoomEntity): string {
  return Buffer.from(JSON.stringify(['d1', room.name.toLowerCase(), room.id])).toString('base64url');
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
