import type { Request, Response } from 'express';

export interface ReadinessProbes {
  database(): Promise<boolean>;
  pubsub(): Promise<boolean>;
}

/** `GET /healthz`: the process is up. */
export function healthz(_req: Request, res: Response): void {
  res.json({ status: 'ok' });
}

/**
 * `GET /readyz`: 503 only when the database does not answer, which stops this instance from
 * serving. Pub/sub is reported in the body (and in `/metrics`) but does not fail readiness: every
 * instance shares one Redis, so failing on it would take the whole fleet out of the load balancer
 * at once, while each instance keeps serving without it (delivery heals from the database).
 */
export function readyz(probes: ReadinessProbes) {
  return async (_req: Request, res: Response) => {
    const [database, pubsub] = await Promise.all([probes.database(), probes.pubsub()]);
    const ready = database;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: database ? 'up' : 'down',
      pubsub: pubsub ? 'up' : 'down',
    });
  };
}
