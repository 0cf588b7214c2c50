// The model test with fixed seeds (CI): the real gateway in same-JID mode with Prosody and
// its companion, PostgreSQL and Redis, driven together with the reference model
// (tests/model/model.mjs) by seeded random operations over WebSocket, SockJS and the JSONP
// API; every answer compared (tests/model/driver.mjs says how). Each seed includes a
// gateway restart, a Redis FLUSHALL and a PostgreSQL restart.
// Longer runs with random seeds: node tests/model/run.mjs --minutes 30
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { gatewayBuilt } from '../lib/imgw.mjs';
import { runSeed, startServers, stopServers } from './driver.mjs';

const SEEDS = [[1, 600], [20261111, 600], [7, 400]];

describe('model', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let servers;
  before(async () => { servers = await startServers(); });
  after(async () => { if (servers) await stopServers(servers); });

  for (const [seed, ops] of SEEDS) {
    it(`seed ${seed}: ${ops} operations, every answer as the model says`, async () => {
      const r = await runSeed({ servers, seed, ops });
      assert.equal(r.ops, ops);
      // Each kind of operation ran at least once (the seed exercises what it should).
      for (const op of ['send', 'retry', 'read', 'open', 'history', 'chats', 'reconnect', 'burst', 'restart', 'pgRestart', 'redisFlush']) {
        assert.ok(r.counts[op] > 0, `seed ${seed} ran no ${op}: ${JSON.stringify(r.counts)}`);
      }
    });
  }
});
