// Cross-gateway relay end to end: Prosody with the companion, one real Redis, and two
// gateways in same-JID mode on two component domains. The companion copies every
// message for a local user to gateway A (gw.shop.test) only, so a web user whose
// browser is on gateway B (gw2.shop.test) can only get it live if A forwards it through
// Redis (relay.c): A has no PostgreSQL and no session of the user, looks the user up in
// imgw:where:{user}, publishes on imgw:node:1, and B pushes the frame.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { sleep, until } from '../lib/bounded.mjs';
import { startProsody } from '../lib/prosody.mjs';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW_A = `gw.${DOMAIN}`;
const GW_B = `gw2.${DOMAIN}`;
const SECRET = 's3cret';


describe('relay between gateways through Redis', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, redis, gwA, gwB, seller;

  const where = async (user) => (await redis.cli('SMEMBERS', `imgw:where:${user}`)).split('\n').filter(Boolean).sort();
  const waitWhere = (user, nodes, ms = 5000) =>
    until(`imgw:where:${user} = [${nodes}]`, ms, async () => JSON.stringify(await where(user)) === JSON.stringify(nodes));
  const sendTo = (user, body) => seller.send(xml('message', { to: `${user}@${DOMAIN}`, type: 'chat' }, xml('body', {}, body)));
  const logSays = (gw, re, ms = 5000) => until(`log ${re}`, ms, () => re.test(gw.logText()));

  before(async () => {
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW_A, secret: SECRET }, { domain: GW_B, secret: SECRET }],
      users: [['seller7', 'pw']],
      companion: { gateway: GW_A, adopt: true, extraGateways: [GW_B] }, // web users registered beforehand; B registers too
      logLevel: 'info',
    });
    redis = await startRedis();
    const common = { mode: 'samejid', redis_host: '127.0.0.1', redis_port: redis.port };
    gwA = await startImgw({ prosody, componentDomain: GW_A, secret: SECRET, config: { ...common, node_id: 0 } });
    gwB = await startImgw({ prosody, componentDomain: GW_B, secret: SECRET, config: { ...common, node_id: 1 } });
    await logSays(gwA, /relay.*subscriber\): up/);
    await logSays(gwB, /relay.*subscriber\): up/);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(seller);
    await gwA?.cleanup();
    await gwB?.cleanup();
    await redis?.cleanup();
    await prosody?.cleanup();
  });

  it('pushes live to a browser on B a message the server gave to A', async () => {
    await prosody.register('webb1', 'pw');
    const web = await openWs(gwB.wsUrl);
    try {
      assert.equal((await web.hello('webb1')).op, 'welcome');
      await waitWhere('webb1', ['1']);
      assert.equal(Number(await redis.cli('TTL', 'imgw:where:webb1')) > 60, true, 'the entry has a TTL');
      await sendTo('webb1', 'through redis');
      const m = await web.next((f) => f.op === 'msg', 5000);
      assert.equal(m.body, 'through redis');
      assert.equal(m.from, `seller7@${DOMAIN}`);
      assert.equal(m.to, `webb1@${DOMAIN}`);
      assert.equal(m.conv, `seller7@${DOMAIN}`);
      assert.match(m.id, /^\d+$/);
      assert.ok(await web.none((f) => f.op === 'msg', 400), 'exactly one copy');
    } finally {
      await web.close();
    }
  });

  it('delivers once on each gateway to a user with sessions on both', async () => {
    await prosody.register('both2', 'pw');
    const onA = await openWs(gwA.wsUrl);
    const onB = await openWs(gwB.wsUrl);
    const onB2 = await openWs(gwB.wsUrl);
    try {
      assert.equal((await onA.hello('both2')).op, 'welcome');
      assert.equal((await onB.hello('both2')).op, 'welcome');
      assert.equal((await onB2.hello('both2')).op, 'welcome');
      await waitWhere('both2', ['0', '1']);
      await sendTo('both2', 'to both');
      const a = await onA.next((f) => f.op === 'msg', 5000);
      const b = await onB.next((f) => f.op === 'msg', 5000);
      const b2 = await onB2.next((f) => f.op === 'msg', 5000);
      for (const m of [a, b, b2]) assert.equal(m.body, 'to both');
      assert.equal(b.id, a.id, 'the same message id on both gateways');
      assert.ok(await onA.none((f) => f.op === 'msg', 400), 'one copy on A');
      assert.ok(await onB.none((f) => f.op === 'msg', 50), 'one copy on B');
      assert.ok(await onB2.none((f) => f.op === 'msg', 50), 'one copy on the second tab on B');
    } finally {
      await onA.close();
      await onB.close();
      await onB2.close();
    }
  });

  it('stops forwarding to B after the last session there closed', async () => {
    await prosody.register('gone3', 'pw');
    const t1 = await openWs(gwB.wsUrl);
    const t2 = await openWs(gwB.wsUrl);
    await t1.hello('gone3');
    await t2.hello('gone3');
    await waitWhere('gone3', ['1']);
    await t1.close();
    await sleep(200);
    assert.deepEqual(await where('gone3'), ['1'], 'still here while a tab is open');
    await t2.close();
    await waitWhere('gone3', []);

    // Watch B's channel: nothing may be published there for gone3 any more.
    const seen = [];
    const { spawn } = await import('node:child_process');
    const sub = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'SUBSCRIBE', 'imgw:node:1']);
    sub.stdout.on('data', (d) => seen.push(d.toString()));
    try {
      await until('redis-cli subscribed', 5000, () => seen.join('').includes('subscribe'));
      const before = await gwB.health();
      await sendTo('gone3', 'nobody on B');
      await sleep(600);
      assert.ok(!seen.join('').includes('nobody on B'), 'not published to B');
      assert.equal((await gwB.health()).status, before.status);
    } finally {
      sub.kill();
    }
  });

  it('ignores forged publishes on B\'s channel and keeps working', async () => {
    await prosody.register('forge4', 'pw');
    const web = await openWs(gwB.wsUrl);
    try {
      await web.hello('forge4');
      await waitWhere('forge4', ['1']);
      const frame = (to, body) => JSON.stringify({ op: 'msg', id: '1', conv: `x@${DOMAIN}`, from: `x@${DOMAIN}`, to, body, kind: 'text', ts: 1, open: false });
      const forged = [
        'garbage',
        '',
        'imgw1 0 0 forge4',                                        // no frame
        `imgw1 0 0 ../etc\n${frame(`forge4@${DOMAIN}`, 'bad user')}`, // bad user id
        `imgw1 0 0 ${'a'.repeat(70)}\n${frame(`forge4@${DOMAIN}`, 'long user')}`,
        `imgw1 0 7 forge4\n${frame(`forge4@${DOMAIN}`, 'other db')}`,  // another database
        `imgw1 99999 0 forge4\n${frame(`forge4@${DOMAIN}`, 'bad node')}`,
        'imgw1 0 0 forge4\n{"op":"msg"',                           // truncated JSON
        'imgw1 0 0 forge4\n{"op":"error","id":"1","to":"forge4@shop.test"}', // not a msg
        'imgw1 0 0 forge4\n{"op":"msg","id":"x1","to":"forge4@shop.test","body":"bad id"}',
        `imgw1 0 0 forge4\n${frame(`other@${DOMAIN}`, 'wrong to')}`, // for someone else
        `imgw1 0 0 forge4\n${frame(`forge4@${DOMAIN}`, 'x')}\xff`,   // trailing bytes
      ];
      for (const f of forged) assert.equal(await redis.cli('PUBLISH', 'imgw:node:1', f), '1', 'B is subscribed');
      assert.ok(await web.none((f) => f.op === 'msg', 400), 'nothing forged reaches the browser');
      assert.match(gwB.logText(), /ignored a relayed message/);

      // B still relays a real message.
      await sendTo('forge4', 'still works');
      assert.equal((await web.next((f) => f.op === 'msg', 5000)).body, 'still works');
      assert.equal((await gwB.health()).status, 'ok');
    } finally {
      await web.close();
    }
  });

  it('re-registers B\'s users after Redis restarts, and forwarding works again', async () => {
    await prosody.register('again5', 'pw');
    const web = await openWs(gwB.wsUrl);
    try {
      await web.hello('again5');
      await waitWhere('again5', ['1']);
      await redis.stop();
      await sleep(300);
      await redis.start(); // empty: persistence is off
      await waitWhere('again5', ['1'], 15000);
      // A may still be reconnecting its own command connection.
      await logSays(gwA, /relay.*redis 127\.0\.0\.1:\d+ \(command\): up[\s\S]*relay.*\(command\): up/, 15000);
      await until('a forward reaches B', 15000, async () => {
        await sendTo('again5', 'after restart');
        return web.next((f) => f.op === 'msg' && f.body === 'after restart', 1000);
      });
    } finally {
      await web.close();
    }
  });
});
