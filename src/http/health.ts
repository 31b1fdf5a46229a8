import type { Request, Response } from 'express';
import { within } from '../within';

export interface ReadinessProbes {
  database(): Promise<boolean>;
  pubsub(): Promise<boolean>;
}

/** How long `/readyz` waits for the database and Redis to answer, in ms. */
const PROBE_TIMEOUT_MS = 800;

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
 *
 * It answers within `PROBE_TIMEOUT_MS`: a database or Redis that has not answered by then counts as
 * down. One that stopped answering with its connections open (a stopped process, a stalled host)
 * would otherwise hold the answer for its command timeout, longer than a balancer's or Kubernetes'
 * probe waits (1 s by default), and the checks would pile up.
 */
export function readyz(probes: ReadinessProbes, withoutPubsub = false) {
  return async (_req: Request, res: Response) => {
    const [database, pubsub] = await Promise.all([
      within(probes.database(), PROBE_TIMEOUT_MS, false),
      within(probes.pubsub(), PROBE_TIMEOUT_MS, false),
    ]);
    const ready = database && (pubsub || withoutPubsub);
    res.status(ready ? 200 : 503).json({
      status: ready ? 'ready' : 'unavailable',
      database: database ? 'up' : 'down',
      pubsub: pubsub ? 'up' : 'down',
    });
  };
}
