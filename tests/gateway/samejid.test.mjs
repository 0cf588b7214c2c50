// Same-JID mode end to end: Prosody with mod_imgw_companion, the gateway in
// mode = samejid, app users over c2s and web users over WebSocket share one JID each.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, nextMessage, nextPresence, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const BODY = `<b>&amp;</b> "q" ünïcödé 😀 \\ ]]>`;

describe('same-JID mode', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, seller;

  before(async () => {
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW, secret: 's3cret' }],
      users: [['seller7', 'pw'], ['buyer42', 'pw']],
      companion: { gateway: GW, adopt: true }, // its users have app accounts from before the web
      modules: ['offline'],
      logLevel: 'info',
    });
    gw = await startImgw({ prosody, config: { mode: 'samejid' } });
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(seller);
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('finds the companion on the server', async () => {
    const deadline = Date.now() + 5000;
    while (!/companion found on shop\.test/.test(gw.logText()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    assert.match(gw.logText(), /companion found on shop\.test/);
  });

  it('warns when the server has no companion', async () => {
    const bare = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    const lone = await startImgw({ prosody: bare, config: { mode: 'samejid' } });
    try {
      const deadline = Date.now() + 5000;
      while (!/does not announce the imgw companion/.test(lone.logText()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      assert.match(lone.logText(), /does not announce the imgw companion/);
    } finally {
      await lone.cleanup();
      await bare.cleanup();
    }
  });

  it('gives a web user the same bare JID as on the app, both ways', async () => {
    const web = await openWs(gw.wsUrl);
    const w = await web.hello('buyer42');
    assert.equal(w.jid, `buyer42@${DOMAIN}`);
    const got = nextMessage(seller, (m) => m.getChildText('body') === BODY, 5000);
    web.send({ op: 'send', to: 'seller7', body: BODY, cid: 's1' });
    const ack = await web.next((f) => f.op === 'ack');
    const m = await got;
    assert.equal(m.attrs.from, `buyer42@${DOMAIN}/web`, 'the app sees the buyer under their own JID');
    assert.equal(m.attrs.type, 'chat');
    // The stanza id is the message id signed for its sender (msgid.h): '<id>.<24 hex>'.
    assert.match(m.attrs.id, new RegExp(`^${ack.id}\\.[0-9a-f]{24}$`));

    await seller.send(xml('message', { to: `buyer42@${DOMAIN}`, type: 'chat' }, xml('body', {}, BODY)));
    const back = await web.next((f) => f.op === 'msg');
    assert.equal(back.from, `seller7@${DOMAIN}`);
    assert.equal(back.conv, `seller7@${DOMAIN}`);
    assert.equal(back.body, BODY);
    await web.close();
  });

  it('delivers to the app and the web when the user is on both', async () => {
    const app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'buyer42', password: 'pw', resource: 'phone' });
    const web = await openWs(gw.wsUrl);
    await web.hello('buyer42');
    try {
      const onApp = nextMessage(app, (m) => m.getChildText('body') === 'both', 5000);
      await seller.send(xml('message', { to: `buyer42@${DOMAIN}`, type: 'chat' }, xml('body', {}, 'both')));
      await onApp;
      const onWeb = await web.next((f) => f.op === 'msg');
      assert.equal(onWeb.body, 'both');
      assert.ok(await web.none((f) => f.op === 'msg', 400), 'exactly one copy on the web');
    } finally {
      await web.close();
      await stopAll(app);
    }
  });

  it('routes web to web through the server, once', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('buyer42');
    await b.hello('seller7');
    a.send({ op: 'send', to: `seller7@${DOMAIN}`, body: 'web to web', cid: 'w1' });
    const ack = await a.next((f) => f.op === 'ack');
    const m = await b.next((f) => f.op === 'msg');
    assert.equal(m.body, 'web to web');
    assert.equal(m.id, ack.id);
    assert.ok(await b.none((f) => f.op === 'msg', 400), 'no duplicate');
    await a.close();
    await b.close();
  });

  it('shows app contacts the user online on the web while a tab is open', async () => {
    await prosody.register('web7', 'pw');
    const me = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'web7', password: 'pw', resource: 'phone' });
    try {
      // seller7 subscribes to web7's presence; web7 approves from the phone.
      await seller.send(xml('presence', { to: `web7@${DOMAIN}`, type: 'subscribe' }));
      await nextPresence(me, (x) => x.attrs.type === 'subscribe', 5000);
      await me.send(xml('presence', { to: `seller7@${DOMAIN}`, type: 'subscribed' }));
      await nextPresence(seller, (x) => x.attrs.from === `web7@${DOMAIN}/phone` && !x.attrs.type, 5000);
      const fromWeb = (x) => x.attrs.from === `web7@${DOMAIN}/web`;
      const t1 = await openWs(gw.wsUrl);
      await t1.hello('web7');
      assert.equal((await nextPresence(seller, fromWeb, 5000)).attrs.type, undefined, 'available with the first tab');
      const t2 = await openWs(gw.wsUrl);
      await t2.hello('web7');
      await t1.close();
      await assert.rejects(nextPresence(seller, fromWeb, 400), /no matching stanza|longer than/, 'still available while a tab is open');
      await t2.close();
      assert.equal((await nextPresence(seller, fromWeb, 5000)).attrs.type, 'unavailable', 'unavailable after the last tab');
    } finally {
      await stopAll(me);
    }
  });

  it('registers an unknown user through the companion at first login', async () => {
    const web = await openWs(gw.wsUrl);
    const w = await web.hello('newbie9');
    assert.equal(w.op, 'welcome');
    assert.equal(w.jid, `newbie9@${DOMAIN}`);
    assert.match(gw.logText(), /registered newbie9@shop\.test through the companion/);
    // The account exists now: a message to it is routed (copied to the gateway) rather
    // than bounced, and reaches the web session.
    await seller.send(xml('message', { to: `newbie9@${DOMAIN}`, type: 'chat' }, xml('body', {}, 'welcome!')));
    assert.equal((await web.next((f) => f.op === 'msg')).body, 'welcome!');
    // A second login of a known user needs no registration round trip.
    const again = await openWs(gw.wsUrl);
    assert.equal((await again.hello('newbie9')).op, 'welcome');
    await web.close();
    await again.close();
  });
});
