'use strict';

module.exports = async function globalTeardown() {
  for (const server of globalThis.__chatTestServers ?? []) await server.destroy();
};
