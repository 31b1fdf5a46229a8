import type { ApolloServerPlugin } from '@apollo/server';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/**
 * Prometheus metrics of one app instance, served at `/metrics`. Each instance has its own
 * registry, so several in one process (tests) don't collide. Services count what they do here;
 * gauges read live values at scrape time.
 */
export class Metrics {
  readonly registry = new Registry();
  /** GraphQL operations over HTTP, by type and outcome. */
  readonly operations = new Counter({
    name: 'chat_graphql_operations_total',
    help: 'GraphQL operations over HTTP by type and outcome',
    labelNames: ['type', 'outcome'] as const,
    registers: [this.registry],
  });
  /** Messages sent by users through this instance (a repeated clientId not counted). */
  readonly messagesSent = new Counter({
    name: 'chat_messages_sent_total',
    help: 'Messages sent by users through this instance',
    registers: [this.registry],
  });
  /** Messages room hubs read from the database because pub/sub did not bring them (lost or late signals). */
  readonly gapFills = new Counter({
    name: 'chat_gap_filled_messages_total',
    help: 'Messages read from the database to fill a gap that pub/sub left',
    registers: [this.registry],
  });
  /** Requests refused RATE_LIMITED, by budget. */
  readonly rateLimited = new Counter({
    name: 'chat_rate_limited_total',
    help: 'Requests refused RATE_LIMITED by this instance, by budget',
    labelNames: ['budget'] as const,
    registers: [this.registry],
  });
  /** Assistant replies that ended here, by final status. */
  readonly assistantReplies = new Counter({
    name: 'chat_assistant_replies_total',
    help: 'Assistant replies ended by this instance, by status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  constructor() {
    // prom-client samples the event loop's delay every 10 ms, which wakes an idle process a hundred
    // times a second; a coarser sampling would move every `nodejs_eventloop_lag_*` reading, since
    // each sample includes the interval (BENCHMARKS.md, "Fewer wake-ups").
    collectDefaultMetrics({ register: this.registry });
  }

  /** A gauge whose value is read from `read` at each scrape. */
  gauge(name: string, help: string, read: () => number | Promise<number>): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }

  /** An Apollo plugin counting operations and their errors. */
  plugin(): ApolloServerPlugin {
    const operations = this.operations;
    return {
      async requestDidStart() {
        return {
          async willSendResponse({ operation, errors }) {
            operations.inc({ type: operation?.operation ?? 'unknown', outcome: errors?.length ? 'error' : 'ok' });
          },
        };
      },
    };
  }
}
