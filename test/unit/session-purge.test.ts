// SessionService purges ended sessions within a minute of an instance's start, then hourly: an
// instance restarted more often than hourly once never purged (found by an outside check).
import { jest } from '@jest/globals';
import type { DataSource } from 'typeorm';
import { PURGE_FIRST_MS, SessionService } from '../../src/auth/sessions';
import { TokenService } from '../../src/auth/tokens';
import { createLogger } from '../../src/logger';
import type { PubSub } from '../../src/pubsub';

const bus = {
  publish: async () => undefined,
  subscribe: async () => async () => undefined,
  onReconnect: () => () => undefined,
} as unknown as PubSub;

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

it('purges within a minute of its start, then every hour, and no more once closed', async () => {
  jest.useFakeTimers();
  jest.spyOn(Math, 'random').mockReturnValue(0.5); // the first purge half a minute in
  const purges: string[] = [];
  const db = { query: async (sql: string) => (purges.push(sql), [[], 0]) } as unknown as DataSource;
  const service = new SessionService(db, new TokenService('a-secret-long-enough-for-hs256-signing-here', 60), bus, createLogger('silent'), 3600);
  service.start();
  await jest.advanceTimersByTimeAsync(PURGE_FIRST_MS);
  expect(purges).toHaveLength(1);
  expect(purges[0]).toMatch(/^DELETE FROM sessions/);
  await jest.advanceTimersByTimeAsync(59 * 60 * 1000);
  expect(purges).toHaveLength(1);
  await jest.advanceTimersByTimeAsync(60 * 1000);
  expect(purges).toHaveLength(2);
  service.close();
  await jest.advanceTimersByTimeAsync(3 * 60 * 60 * 1000);
  expect(purges).toHaveLength(2);
});
