// Issue 14 end to end: with companion protocol version 1 a web user is an online
// resource (user@DOMAIN/web) of the XMPP server. Prosody with mod_imgw_companion and
// mod_offline, the gateway in same-JID mode, app users over c2s, browsers over WebSocket.
//
// "Stored offline" is read from Prosody's own storage (data/<host>/offline/<user>.list),
// so the test sees what an app opening later would be flooded with.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until, within } from '../lib/bounded.mjs';
import { login, nextMessage, nextPresence, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const LEASE = 6; // seconds: heartbeats every 2 s, a dead gateway's users go within ~6 s

describe('web users are online on the XMPP server (companion version 1)', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, seller;
  const open = [];

  /** Messages Prosody holds offline for user (0 when none). */
  const offline = (user) => {
    const f = path.join(prosody.dir, 'data', 'shop%2etest', 'offline', `${user}.list`);
    if (!fs.existsSync(f)) return 0;
    return (fs.readFileSync(f, 'utf8').match(/^item\(/gm) || []).length;
  };
  const chat = (to, body, attrs = {}) => xml('message', { to, type: 'chat', ...attrs }, xml('body', {}, body));
  const fromWeb = (user) => (x) => x.attrs.from === `${user}@${DOMAIN}/web`;

  async function web(user) {
    const t = await openWs(gw.wsUrl);
    open.push(t);
    assert.equal((await t.hello(user)).op, 'welcome');
    return t;
  }

  /** seller7 and user subscribe to each other (user approves from a short c2s login). */
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
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW, secret: 's3cret' }],
      users: [['seller7', 'pw'], ['buyer1', 'pw'], ['buyer2', 'pw'], ['buyer3', 'pw'], ['buyer4', 'pw'], ['buyer5', 'pw']],
      // Accounts made with prosodyctl before imgw: the companion may adopt them.
      companion: { gateway: GW, adopt: true },
      modules: ['offline'],
      logLevel: 'info',
    });
    gw = await startImgw({ prosody, config: { mode: 'samejid', companion_lease_s: LEASE } });
    await until('companion version 1 found', 10000, () => /companion found on shop\.test \(version 1/.test(gw.logText()), gw.logText);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    for (const t of open) await t.close();
    await stopAll(seller);
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  // The web resource appears one round trip to the companion after the welcome; tests
  // wait for its presence (as a contact) before relying on it.
  const online = (user) => nextPresence(seller, (x) => fromWeb(user)(x) && !x.attrs.type, 5000);
  const offlineNow = (user) => nextPresence(seller, (x) => fromWeb(user)(x) && x.attrs.type === 'unavailable', 5000);

  it('stores nothing offline for a web-online user, and everything for one who is offline', async () => {
    await befriend('buyer1');
    const t = await web('buyer1');
    await online('buyer1');
    for (let i = 1; i <= 3; i++) await seller.send(chat(`buyer1@${DOMAIN}`, `while online ${i}`));
    for (let i = 1; i <= 3; i++) assert.equal((await t.next((f) => f.op === 'msg')).body, `while online ${i}`);
    assert.equal(offline('buyer1'), 0, 'nothing in offline storage while on the web');
    await t.close();
    // The last tab closed: the resource goes at once (no lease wait for a clean close).
    await offlineNow('buyer1');
    await seller.send(chat(`buyer1@${DOMAIN}`, 'while offline'));
    await until('stored offline', 5000, () => offline('buyer1') === 1);
  });

  it('delivers a message for the full JID user@DOMAIN/web to the browser only', async () => {
    await befriend('buyer2');
    const t = await web('buyer2');
    await online('buyer2');
    await seller.send(chat(`buyer2@${DOMAIN}/web`, 'to the web resource'));
    assert.equal((await t.next((f) => f.op === 'msg')).body, 'to the web resource');
    assert.ok(await t.none((f) => f.op === 'msg', 300), 'once');
    assert.equal(offline('buyer2'), 0);
  });

  it('shows contacts the web resource, answers their probes, and takes it away with the last tab', async () => {
    await befriend('buyer3');
    const t1 = await web('buyer3');
    assert.equal((await nextPresence(seller, fromWeb('buyer3'), 5000)).attrs.type, undefined, 'available');
    // A contact who logs in later probes and sees the web resource too.
    const late = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'tablet' });
    try {
      const p = await nextPresence(late, fromWeb('buyer3'), 5000);
      assert.equal(p.attrs.type, undefined, 'the probe of a late contact is answered');
    } finally {
      await stopAll(late);
    }
    await t1.close();
    assert.equal((await nextPresence(seller, fromWeb('buyer3'), 5000)).attrs.type, 'unavailable');
  });

  it('a gateway killed with SIGKILL takes its users offline within the lease, and back on restart', async () => {
    await befriend('buyer4');
    const t = await web('buyer4');
    await online('buyer4');
    const killedAt = Date.now();
    await gw.kill();
    await within(t.closed, 5000, 'browser sees the gateway go');
    const gone = await nextPresence(seller, fromWeb('buyer4'), (LEASE + 5) * 1000);
    assert.equal(gone.attrs.type, 'unavailable');
    const took = Date.now() - killedAt;
    assert.ok(took <= (LEASE + 5) * 1000, `unavailable after ${took} ms`);
    // Meanwhile messages are stored offline: nobody is online for the user.
    await seller.send(chat(`buyer4@${DOMAIN}`, 'while the gateway is dead'));
    await until('stored offline', 5000, () => offline('buyer4') === 1);
    await gw.start();
    const t2 = await web('buyer4');
    assert.equal((await nextPresence(seller, fromWeb('buyer4'), 5000)).attrs.type, undefined, 'online again');
    await t2.close();
  });

  it('survives an XMPP server restart under the gateway: the web resource comes back', async () => {
    await befriend('buyer5');
    const t = await web('buyer5');
    await online('buyer5');
    await stopAll(seller);
    await prosody.restart();
    await gw.waitLink('up', 15000);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
    // The companion forgot everything; the gateway registers again and lists its users,
    // so seller7's probe at login finds buyer5 on the web.
    const p = await nextPresence(seller, fromWeb('buyer5'), 10000);
    assert.equal(p.attrs.type, undefined);
    await seller.send(chat(`buyer5@${DOMAIN}`, 'after the restart'));
    assert.equal((await t.next((f) => f.op === 'msg', 10000)).body, 'after the restart');
    assert.equal(offline('buyer5'), 0);
  });
});
