// Starts the PostgreSQL and Redis the integration tests run against, unless TEST_DATABASE_URL /
// TEST_REDIS_URL point at existing servers. Test workers inherit the URLs through the environment.
'use strict';
const { startPostgres, startRedis } = require('./servers');

module.exports = async function globalSetup() {
  const started = [];
  if (!process.env.TEST_DATABASE_URL) {
    const pg = await startPostgres();
    started.push(pg);
    process.env.TEST_DATABASE_URL = pg.url;
  }
  if (!process.env.TEST_REDIS_URL) {
    const redis = await startRedis();
    started.push(redis);
    process.env.TEST_REDIS_URL = redis.url;
  }
  globalThis.__chatTestServers = started;
};
