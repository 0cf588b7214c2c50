// Relay gaps, again and again: two gateways in same-JID mode share PostgreSQL and Redis;
// the companion copies every message to gateway A only, so a browser on gateway B gets it
// through the relay. While Redis is down (and while it comes back empty) forwards are lost
// with pub/sub, so every time B's subscription returns, B's sessions recover from history
// what was stored since a little before the gap. Found by the soak: a session that had
// recovered once (at hello, or at an earlier gap) was skipped at every later gap, and the
// messages of the second Redis outage never reached it.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until } from '../lib/bounded.mjs';
import { login, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW_A = `gw.${DOMAIN}`;
const GW_B = `gw2.${DOMAIN}`;

describe('relay gaps', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, redis, gwA, gwB, seller;
  const spools = [];

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW_A, secret: 's3cret' }, { domain: GW_B, secret: 's3cret' }],
      users: [['seller7', 'pw'], ['gapper', 'pw']],
      companion: { gateway: GW_A, adopt: true, extraGateways: [GW_B] },
      logLevel: 'info',
    });
    const common = { mode: 'samejid', pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port };
    for (let i = 0; i < 2; i++) spools.push(fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-spool-')));
    gwA = await startImgw({ prosody, componentDomain: GW_A, config: { ...common, node_id: 0, spool_dir: spools[0] } });
    gwB = await startImgw({ prosody, componentDomain: GW_B, config: { ...common, node_id: 1, spool_dir: spools[1] } });
    for (const g of [gwA, gwB]) await until('relay up', 10000, () => /relay.*subscriber\): up/.test(g.logText()), g.logText);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(seller);
    await gwA?.cleanup();
    await gwB?.cleanup();
    await prosody?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
    for (const d of spools) fs.rmSync(d, { recursive: true, force: true });
  });

  it('every Redis outage ends with a replay on B, and what was sent meanwhile reaches the browser', async () => {
    const t = await openWs(gwB.wsUrl);
    try {
      assert.equal((await t.hello('gapper', { last_id: '1' })).op, 'welcome');
      assert.equal((await t.next((f) => f.op === 'recovered', 10000)).reset, false);
      for (let round = 1; round <= 3; round++) {
        await redis.stop();
        const body = `during outage ${round}`;
        await seller.send(xml('message', { to: `gapper@${DOMAIN}`, type: 'chat', id: `gap${round}` }, xml('body', {}, body)));
        await until(`outage ${round}: stored`, 15000, async () =>
          Number(await pg.psql(`SELECT count(*) FROM messages WHERE body = '${body}'`)) === 1);
        await redis.start(); // empty: persistence is off
        const rec = await t.next((f) => f.op === 'recovered', 20000);
        assert.equal(rec.reset, false, `round ${round}`);
        const m = await t.next((f) => f.op === 'msg' && f.body === body, 10000);
        assert.equal(m.from, `seller7@${DOMAIN}`);
      }
    } finally {
      await t.close();
    }
  });
});
