import type { ApolloServerPlugin } from '@apollo/server';
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';

/** Live counts the metrics read at scrape time. */
export interface MetricSources {
  webSockets(): number;
  roomHubs(): number;
}

/** Prometheus metrics of one app instance (its own registry, so instances in one process don't collide). */
export class Metrics {
  readonly registry = new Registry();
  readonly operations: Counter<'type' | 'outcome'>;

  constructor(sources: MetricSources) {
    collectDefaultMetrics({ register: this.registry });
    this.operations = new Counter({
      name: 'chat_graphql_operations_total',
      help: 'GraphQL operations over HTTP by type and outcome',
      labelNames: ['type', 'outcome'],
      registers: [this.registry],
    });
    new Gauge({
      name: 'chat_websocket_connections',
      help: 'Open graphql-ws connections',
      registers: [this.registry],
      collect() {
        this.set(sources.webSockets());
      },
    });
    new Gauge({
      name: 'chat_room_hubs',
      help: 'Rooms with live subscribers on this instance',
      registers: [this.registry],
      collect() {
        this.set(sources.roomHubs());
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
