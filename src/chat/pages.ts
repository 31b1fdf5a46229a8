/** A Relay connection page. */
export interface Connection<T> {
  edges: Array<{ cursor: string; node: T }>;
  pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string | null; endCursor: string | null };
}

/**
 * Builds a page from up to `limit + 1` edges read in page order: the extra edge only tells that
 * more follow. `known` supplies what the query knows about the other side.
 */
export function connection<T>(
  items: Array<{ cursor: string; node: T }>,
  limit: number,
  known: { hasPreviousPage?: boolean; hasNextPage?: boolean },
): Connection<T> {
  const more = items.length > limit;
  const edges = more ? items.slice(0, limit) : items;
  return {
    edges,
    pageInfo: {
      hasNextPage: known.hasNextPage ?? more,
      hasPreviousPage: known.hasPreviousPage ?? more,
      startCursor: edges[0]?.cursor ?? null,
      endCursor: edges[edges.length - 1]?.cursor ?? null,
    },
  };
}
