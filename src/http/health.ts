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
 * `GET /readyz`: 200 while the database and pub/sub both answer, 503 otherwise (the contract's
 * readiness), each reported in the body. With `withoutPubsub` (`READY_WITHOUT_PUBSUB`) only the
 * database counts: every instance shares one Redis, so failing on it takes the whole fleet out of
 * the load balancer at once, where each instance could go on serving (delivery heals from the
 * database, budgets fall back to memory); an operator may prefer that.
 */
export function readyz(probes: ReadinessProbes, withoutPubsub = false) {
  return async (_req: Request, res: Response) => {
    const [database, pubsub] = await Promise.all([probes.database(), probes.pubsub()]);
    const ready = database && (pubsub || withoutPubsub);
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: database ? 'up' : 'down',
      pubsub: pubsub ? 'up' : 'down',
    });
  };
}
