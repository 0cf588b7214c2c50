// Two gateways serving one domain (issues 10 and 14). Prosody has no allowMultiple, so the
// companion is given both gateways' component domains and deals copies round-robin over
// those with a live instance, as Openfire deals stanzas over the connections of one
// allowMultiple domain. Both gateways share PostgreSQL and Redis (relay between them).
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
import { until, within } from '../lib/bounded.mjs';
import { login, nextMessage, nextPresence, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW_A = `gw.${DOMAIN}`;
const GW_B = `gw2.${DOMAIN}`;
const LEASE = 6;

describe('two gateways on one XMPP domain', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, redis, gwA, gwB, seller;
  const spools = [];
  const open = [];

  const chat = (to, body, id) => xml('message', { to, type: 'chat', id }, xml('body', {}, body));
  const stored = async (where) => Number(await pg.psql(`SELECT count(*) FROM messages WHERE ${where}`));
  const fromWeb = (user) => (x) => x.attrs.from === `${user}@${DOMAIN}/web`;

  async function web(gw, user) {
    const t = await openWs(gw.wsUrl);
    open.push(t);
    assert.equal((await t.hello(user)).op, 'welcome');
    return t;
  }

  /** Messages on t whose body starts with prefix until n distinct arrived; then checks for repeats. */
  async function collect(t, prefix, n, ms = 20000) {
    const ids = new Map();
    const deadline = Date.now() + ms;
    while (ids.size < n) {
      const f = await t.next((x) => x.op === 'msg' && x.body.startsWith(prefix), Math.max(1, deadline - Date.now()));
      ids.set(f.id, (ids.get(f.id) ?? 0) + 1);
    }
    while (!(await t.none((x) => x.op === 'msg' && x.body.startsWith(prefix), 300))) { /* counted below */ }
    return ids;
  }

  async function befriend(user) {
    const me = await login({ port: prosody.c2sPort, domain: DOMAIN, username: user, password: 'pw', resource: 'setup' });
    try {
      await seller.send(xml('presence', { to: `${user}@${DOMAIN}`, type: 'subscribe' }));
      await nextPresence(me, (x) => x.attrs.type === 'subscribe', 5000);
      await me.send(xml('presence', { to: `seller7@${DOMAIN}`, type: 'subscribed' }));
      await nextPresence(seller, (x) => x.attrs.from === `${user}@${DOMAIN}/setup` && !x.attrs.type, 5000);
    } finally {
      await stopAll(me);
    }
    await nextPresence(seller, (x) => x.attrs.from === `${user}@${DOMAIN}/setup` && x.attrs.type === 'unavailable', 5000);
  }

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW_A, secret: 's3cret' }, { domain: GW_B, secret: 's3cret' }],
      users: [['seller7', 'pw'], ['buyer1', 'pw'], ['buyer2', 'pw'], ['buyer3', 'pw']],
      // Accounts made with prosodyctl before imgw: the companion may adopt them.
      companion: { gateway: [GW_A, GW_B], adopt: true },
      modules: ['offline'],
      hostConfig: '  imgw_ack_timeout = 2',
      logLevel: 'info',
    });
    const common = {
      mode: 'samejid', pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port,
      companion_lease_s: LEASE,
    };
    for (let i = 0; i < 2; i++) spools.push(fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-spool-')));
    gwA = await startImgw({ prosody, componentDomain: GW_A, config: { ...common, node_id: 0, spool_dir: spools[0] } });
    gwB = await startImgw({ prosody, componentDomain: GW_B, config: { ...common, node_id: 1, spool_dir: spools[1] } });
    for (const g of [gwA, gwB]) {
      await until('companion version 1', 10000, () => /companion found on shop\.test \(version 1/.test(g.logText()), g.logText);
      await until('relay up', 10000, () => /relay.*subscriber\): up/.test(g.logText()), g.logText);
    }
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    for (const t of open) await t.close();
    await stopAll(seller);
    for (const g of [gwA, gwB]) {
      if (g?.pid) { try { process.kill(g.pid, 'SIGCONT'); } catch { /* gone */ } }
      await g?.cleanup();
    }
    await prosody?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
    for (const d of spools) fs.rmSync(d, { recursive: true, force: true });
  });

  it('copies go to both gateways; a browser on one gets every message once', async () => {
    const t = await web(gwA, 'buyer1');
    const N = 20;
    for (let i = 1; i <= N; i++) await seller.send(chat(`buyer1@${DOMAIN}`, `split ${i}`, `s${i}`));
    const ids = await collect(t, 'split ', N);
    assert.equal(ids.size, N);
    assert.deepEqual([...ids.values()].filter((c) => c > 1), [], 'no message shown twice');
    assert.equal(await stored("body LIKE 'split %'"), N);
    // Both gateways stored some: the companion dealt the copies over both. A message id
    // carries the node id of the gateway that gave it (bits 12-21).
    const nodes = await pg.psql("SELECT DISTINCT (id >> 12) & 1023 FROM messages WHERE body LIKE 'split %' ORDER BY 1");
    assert.deepEqual(nodes.split('\n'), ['0', '1']);
  });

  it('the web resource stays while any gateway holds a session, and goes with the last', async () => {
    await befriend('buyer2');
    const onA = await web(gwA, 'buyer2');
    assert.equal((await nextPresence(seller, fromWeb('buyer2'), 5000)).attrs.type, undefined);
    const onB = await web(gwB, 'buyer2');
    // B announces buyer2 to the companion on its stream right after the welcome; a send-as
    // from B arriving at the seller was handled after it (one stream, in order). Without
    // this wait A's leave could be handled first and the resource blink.
    onB.send({ op: 'send', to: `seller7@${DOMAIN}`, body: 'via B', cid: 'viaB' });
    await nextMessage(seller, (m) => m.getChildText('body') === 'via B', 10000);
    await onA.close();
    await assert.rejects(nextPresence(seller, fromWeb('buyer2'), 1000), /no matching stanza/, 'still online through B');
    await onB.close();
    assert.equal((await nextPresence(seller, fromWeb('buyer2'), 5000)).attrs.type, 'unavailable');
  });

  it('copies a killed gateway had are stored by the other one; the browser gets them once', async () => {
    const t = await web(gwA, 'buyer3');
    process.kill(gwB.pid, 'SIGSTOP');
    const N = 10;
    try {
      for (let i = 1; i <= N; i++) await seller.send(chat(`buyer3@${DOMAIN}`, `orphan ${i}`, `o${i}`));
      await seller.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    } finally {
      await gwB.kill();
    }
    const ids = await collect(t, 'orphan ', N, (LEASE + 20) * 1000);
    assert.equal(ids.size, N);
    assert.deepEqual([...ids.values()].filter((c) => c > 1), [], 'none twice');
    await until('all stored once', 10000, async () => (await stored("body LIKE 'orphan %'")) === N);
    await within(gwB.start(), 20000, 'gateway B restarts');
  });

  it('while a killed gateway\'s lease runs, copies go only to the gateway whose stream is up', async () => {
    await until('B is an instance again', 10000, () => /companion found on shop\.test \(version 1/.test(gwB.logText()), gwB.logText);
    const t = await web(gwA, 'buyer1');
    await gwB.kill(); // its instance lives on until the lease ends
    const N = 10;
    const bounced = () => (prosody.logText().match(/Component not connected, bouncing error/g) ?? []).length;
    const before = bounced();
    for (let i = 1; i <= N; i++) await seller.send(chat(`buyer1@${DOMAIN}`, `lease ${i}`, `l${i}`));
    const ids = await collect(t, 'lease ', N);
    assert.equal(ids.size, N);
    // Before: every other copy went to B's domain, was bounced by Prosody and reached A
    // only after the ack timeout.
    assert.equal(bounced() - before, 0, 'no copy sent to the domain without a stream');
    await within(gwB.start(), 20000, 'gateway B restarts');
  });
});
