import { Init1763800000000 } from './1763800000000-init';
import { Assistant1763900000000 } from './1763900000000-assistant';

/** Every migration, oldest first; run at start on PostgreSQL and PGlite alike. */
export const migrations = [Init1763800000000, Assistant1763900000000];
