// The relay when Redis is up but behind: a burst of forwards larger than the number of
// Redis commands a gateway lets wait (10,000) must be delayed, not dropped. Two gateways
// bind one component domain of a scripted XEP-0114 server (allowMultiple, as with
// Openfire); bob's browser is on gateway B; 12,000 messages for bob are written to gateway
// A's connection while Redis sleeps (DEBUG SLEEP), so A's forwards pile up; bob must get
// every one, once, in order.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until } from '../lib/bounded.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const SECRET = 's3cret';
const BURST = 12000;

/** Accepts component connections (allowMultiple), answers the handshake, keeps them in order. */
async function componentServer() {
  const links = [];
  const srv = net.createServer((s) => {
    const id = crypto.randomBytes(6).toString('hex');
    let buf = '';
    let up = false;
    s.on('error', () => {});
    s.on('data', (d) => {
      if (up) return; // the gateways' presence, keep-alives and IQs need no answer here
      buf += d.toString();
      if (!s.opened && buf.includes('<stream:stream')) {
        s.opened = true;
        s.write("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
          + `xmlns='jabber:component:accept' id='${id}' from='${GW}'>`);
      }
      const m = /<handshake>([0-9a-f]+)<\/handshake>/.exec(buf);
      if (m && m[1] === crypto.createHash('sha1').update(id + SECRET).digest('hex')) {
        up = true;
        s.write('<handshake/>');
        links.push(s);
      }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    port: srv.address().port,
    links,
    close: () => { for (const s of links) s.destroy(); srv.close(); },
  };
}

describe('relay backlog', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let xs, redis, gwA, gwB;

  before(async () => {
    xs = await componentServer();
    // Redis 7 refuses DEBUG unless told otherwise.
    redis = await startRedis({ args: ['--enable-debug-command', 'local'] });
    const common = {
      allow_multiple: 'yes', redis_host: '127.0.0.1', redis_port: redis.port, log_level: 'warning',
      xmpp_port: xs.port, session_queue_max: BURST + 1000,
    };
    gwA = await startImgw({ componentDomain: GW, secret: SECRET, config: { ...common, node_id: 1 } });
    await until('gateway A bound', 10000, () => xs.links.length === 1);
    gwB = await startImgw({ componentDomain: GW, secret: SECRET, config: { ...common, node_id: 2 } });
    await until('gateway B bound', 10000, () => xs.links.length === 2);
  });

  after(async () => {
    await gwA?.cleanup();
    await gwB?.cleanup();
    xs?.close();
    await redis?.cleanup();
  });

  it('delays forwards past the outstanding-command bound instead of dropping them', async () => {
    const bob = await openWs(gwB.wsUrl);
    try {
      assert.equal((await bob.hello('bob')).op, 'welcome');
      await until('bob in the directory', 5000, async () => (await redis.cli('SMEMBERS', 'imgw:where:bob')) === '2');
      // Redis stops answering for a while (the connection stays up); A's forwards wait.
      const slept = redis.cli('DEBUG', 'SLEEP', '2');
      await new Promise((r) => setTimeout(r, 200)); // DEBUG SLEEP has reached Redis
      let chunk = '';
      for (let i = 0; i < BURST; i++) {
        chunk += `<message from='app1@${DOMAIN}/r' to='bob@${GW}' type='chat' id='m${i}'><body>n${i}</body></message>`;
      }
      xs.links[0].write(chunk);
      assert.equal(await slept, 'OK', 'DEBUG SLEEP ran');
      const got = [];
      await until(`bob got ${BURST} messages`, 60000, async () => {
        for (let f; (f = bob.inbox.findIndex((x) => x.op === 'msg')) >= 0;) got.push(bob.inbox.splice(f, 1)[0].body);
        return got.length >= BURST;
      }).catch((err) => {
        throw new Error(`${err.message}: got ${got.length}; gateway A log: ${gwA.logText().slice(-600)}`);
      });
      assert.deepEqual(got, Array.from({ length: BURST }, (_, i) => `n${i}`), 'every message once, in order');
      assert.equal(await gwA.metric('imgw_relay_errors_total'), 0);
    } finally {
      await bob.close();
    }
  });
});
