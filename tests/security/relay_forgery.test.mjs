// Issue 9 item 7: Redis peers are not trusted blindly. Envelopes between gateways are
// signed (HMAC under relay_secret, by default derived from component_secret), every member
// of the relayed frame is checked, and the gateways log in to Redis (AUTH with an ACL user).
//
// As found: `PUBLISH imgw:node:0` with a forged envelope put a message "from ceo@…" with
// extra members into alice's browser. Here: Prosody with the companion, a real Redis with
// the default user locked by a password and an ACL user for the gateways, two gateways in
// same-JID mode on two component domains (the companion copies to A only, so a browser on
// B gets a message live only through A's relay), and forged PUBLISHes on B's channel.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startProsody } from '../lib/prosody.mjs';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, stopAll, xml } from '../lib/xmpp.mjs';
import { sleep, until } from '../lib/bounded.mjs';

const DOMAIN = 'shop.test';
const GW_A = `gw.${DOMAIN}`;
const GW_B = `gw2.${DOMAIN}`;
const SECRET = 's3cret-component';
const ADMIN = ['--user', 'default', '--pass', 'admin-pass', '--no-auth-warning'];

/** The envelope key as relay.c derives it from a secret. */
const keyOf = (secret) => crypto.createHmac('sha256', secret).update('imgw relay envelope key v1').digest();

/** An envelope as a gateway of `secret` would seal it (relay.h). */
function seal(secret, { ts = Date.now(), node = 0, db = 0, user, frame }) {
  const signed = `${ts} ${node} ${db} ${user}\n${frame}`;
  const tag = crypto.createHmac('sha256', keyOf(secret)).update(signed).digest('hex').slice(0, 32);
  return `imgw2 ${tag} ${signed}`;
}

const msgFrame = (over = {}) => JSON.stringify({
  op: 'msg', id: '385900000000000001', conv: `seller7@${DOMAIN}`, from: `seller7@${DOMAIN}`,
  to: `alice@${DOMAIN}`, body: 'hello', kind: 'text', ts: Date.now(), open: false, ...over,
});

describe('relay envelopes and Redis AUTH', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, redis, gwA, gwB, seller;
  const admin = (...cmd) => redis.cli(...ADMIN, ...cmd);
  const metric = async (gw, name) => {
    const text = await (await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const m = text.match(new RegExp(`^${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : NaN;
  };
  const logSays = (gw, re, ms = 10000) => until(`log ${re}`, ms, () => re.test(gw.logText()), gw.logText);

  before(async () => {
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW_A, secret: SECRET }, { domain: GW_B, secret: SECRET }],
      // alice is a web user only: the companion creates her account at her first login.
      users: [['seller7', 'pw']],
      // Copies go to A only; B is trusted too, for registering its users.
      companion: { gateway: GW_A, extraGateways: [GW_B] },
      logLevel: 'info',
    });
    redis = await startRedis();
    // The gateways' own ACL user, limited to imgw's keys and channels; then lock the default user.
    await redis.cli('ACL', 'SETUSER', 'imgw', 'on', '>imgw-pass', '~imgw:*', '&imgw:*', '+@all', '-@admin');
    await redis.cli('ACL', 'SETUSER', 'default', 'resetpass', '>admin-pass');
    assert.match(await redis.cli('GET', 'x'), /NOAUTH/, 'Redis now requires a password');
    const common = {
      mode: 'samejid', redis_host: '127.0.0.1', redis_port: redis.port,
      redis_user: 'imgw', redis_password: 'imgw-pass',
    };
    gwA = await startImgw({ prosody, componentDomain: GW_A, secret: SECRET, config: { ...common, node_id: 0 } });
    gwB = await startImgw({ prosody, componentDomain: GW_B, secret: SECRET, config: { ...common, node_id: 1 } });
    await logSays(gwA, /relay.*subscriber\): up/);
    await logSays(gwB, /relay.*subscriber\): up/);
    await logSays(gwB, /cache.*connected/);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(seller);
    await gwA?.cleanup();
    await gwB?.cleanup();
    await redis?.cleanup();
    await prosody?.cleanup();
  });

  it('relays between gateways logged in to Redis as an ACL user', async () => {
    const web = await openWs(gwB.wsUrl);
    try {
      assert.equal((await web.hello('alice')).op, 'welcome');
      await until('alice in the directory', 10000, async () => (await admin('SMEMBERS', 'imgw:where:alice')) === '1');
      await seller.send(xml('message', { to: `alice@${DOMAIN}`, type: 'chat' }, xml('body', {}, 'through redis')));
      const m = await web.next((f) => f.op === 'msg', 10000);
      assert.equal(m.body, 'through redis');
      assert.equal(m.from, `seller7@${DOMAIN}`);
    } finally {
      await web.close();
    }
  });

  it('refuses forged, unsigned, stale and malformed envelopes, counts them, and keeps working', async () => {
    const web = await openWs(gwB.wsUrl);
    try {
      assert.equal((await web.hello('alice')).op, 'welcome');
      await until('alice in the directory', 10000, async () => (await admin('SMEMBERS', 'imgw:where:alice')) === '1');
      const refused0 = await metric(gwB, 'imgw_relay_refused_total');
      const ceo = msgFrame({ from: `ceo@${DOMAIN}`, conv: `ceo@${DOMAIN}`, body: 'wire the money', extra: 'x', admin: true });
      const forged = [
        // The attack as found: the old unsigned format, extra members, a message "from ceo".
        `imgw1 0 0 alice\n${ceo}`,
        // Signed, but with a key the gateways do not have.
        seal('not the secret', { user: 'alice', frame: msgFrame({ body: 'wrong key' }) }),
        // The right shape with a made-up tag.
        `imgw2 ${'0'.repeat(32)} ${Date.now()} 0 0 alice\n${msgFrame({ body: 'zero tag' })}`,
        // A real signature over another envelope's header (the user changed afterwards).
        seal(SECRET, { user: 'mallory', frame: msgFrame({ body: 'moved' }) }).replace(' mallory\n', ' alice\n'),
        // Properly signed (the test knows the secret) but stale: a replay 10 minutes later.
        seal(SECRET, { ts: Date.now() - 600_000, user: 'alice', frame: msgFrame({ body: 'stale' }) }),
        // Properly signed, and still refused for what is inside.
        seal(SECRET, { user: 'alice', frame: ceo }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ to: `bob@${DOMAIN}`, body: 'for bob' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ to: 'alice@evil.example', body: 'other domain' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ from: 'seller7@shop.test/phone', conv: 'seller7@shop.test/phone', body: 'full jid' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ from: 'x y@shop.test', conv: 'x y@shop.test', body: 'space' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ conv: `other@${DOMAIN}`, body: 'conv differs' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ body: 'nul\u0000' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ body: 'ctl\u0001' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ id: 'x1', body: 'bad id' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ kind: 'html', body: 'kind' }) }),
        seal(SECRET, { user: 'alice', frame: msgFrame({ ts: 'now', body: 'ts type' }) }),
        seal(SECRET, { user: 'alice', frame: `${msgFrame({ body: 'trailing' })} x` }),
      ];
      for (const f of forged) assert.equal(await admin('PUBLISH', 'imgw:node:1', f), '1', 'B is subscribed');
      // The control case, sealed the same way: proves the forgeries failed for their flaw.
      assert.equal(await admin('PUBLISH', 'imgw:node:1', seal(SECRET, { user: 'alice', frame: msgFrame({ body: 'genuine' }) })), '1');
      const got = await web.next((f) => f.op === 'msg', 10000);
      assert.equal(got.body, 'genuine', `the first msg to arrive: ${JSON.stringify(got)}`);
      assert.deepEqual(Object.keys(got).filter((k) => k !== '__binary').sort(), ['body', 'conv', 'from', 'id', 'kind', 'op', 'open', 'to', 'ts'],
        'the browser gets the gateway\'s own encoding, not the relayed text');
      assert.ok(await web.none((f) => f.op === 'msg', 300), 'nothing forged reaches the browser');
      await until('refusals counted', 5000, async () => (await metric(gwB, 'imgw_relay_refused_total')) === refused0 + forged.length);
      assert.match(gwB.logText(), /ignored a relayed message: (unsigned|bad signature|too old|not a msg frame)/);
      // B still relays a real message.
      await seller.send(xml('message', { to: `alice@${DOMAIN}`, type: 'chat' }, xml('body', {}, 'still works')));
      assert.equal((await web.next((f) => f.op === 'msg', 10000)).body, 'still works');
    } finally {
      await web.close();
    }
  });

  it('logs a refused AUTH clearly and retries with backoff, never in a loop', async () => {
    const bad = await startImgw({
      prosody, componentDomain: 'gw3.shop.test', secret: SECRET, waitLinkUp: false,
      config: { mode: 'samejid', redis_host: '127.0.0.1', redis_port: redis.port, redis_user: 'imgw', redis_password: 'Wr0ngPa55', node_id: 2 },
    });
    const none = await startImgw({
      prosody, componentDomain: 'gw4.shop.test', secret: SECRET, waitLinkUp: false,
      config: { mode: 'samejid', redis_host: '127.0.0.1', redis_port: redis.port, node_id: 3 },
    });
    try {
      await logSays(bad, /AUTH refused: WRONGPASS.*check redis_user and redis_password/);
      await logSays(none, /NOAUTH/);
      await sleep(2500);
      const attempts = (bad.logText().match(/AUTH refused/g) ?? []).length;
      // Three connections (cache, relay command, relay subscriber), each retrying from
      // 100 ms doubling: about 5 attempts each in 2.5 s, not thousands.
      assert.ok(attempts >= 3 && attempts <= 24, `${attempts} AUTH attempts`);
      assert.ok(!bad.logText().includes('Wr0ngPa55'), 'the password is never logged');
      assert.equal((await bad.health()).status !== undefined, true, 'the gateway keeps serving');
    } finally {
      await bad.cleanup();
      await none.cleanup();
    }
  });
});
