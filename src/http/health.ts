import type { Request, Response } from 'express';

export interface ReadinessProbes {
  database(): Promise<boolean>;
  pubsub(): Promise<boolean>;
}

/** `GET /healthz`: the process is up. */
export function healthz(_req: Request, res: Response): void {
  res.json({ status: 'ok' });
}

/** `GET /readyz`: 200 when the database and pub/sub both answer, 503 otherwise, each reported. */
export function readyz(probes: ReadinessProbes) {
  return async (_req: Request, res: Response) => {
    const [database, pubsub] = await Promise.all([probes.database(), probes.pubsub()]);
    const ready = database && pubsub;
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: database ? 'up' : 'down',
      pubsub: pubsub ? 'up' : 'down',
    });
  };
}
