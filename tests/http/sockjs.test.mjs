// SockJS server end-to-end: an unmodified sockjs-client 1.6 (Node transports: websocket,
// xhr-streaming, xhr-polling, eventsource) against a real gateway and Prosody, and
// protocol-level checks with plain HTTP. Run: node --test tests/http/
import { after, before, describe, it } from '../lib/test.mjs';
import { scaled, until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import SockJS from 'sockjs-client';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;

/** A sockjs-client connection with an inbox of parsed protocol frames. */
function sjsOpen(url, transports) {
  const sock = new SockJS(url, null, { transports, timeout: 5000 });
  const inbox = [];
  const waiters = [];
  let closed = null;
  const c = {
    sock,
    closed: new Promise((resolve) => { sock.onclose = (e) => { closed = e; resolve(e); for (const w of waiters.splice(0)) w.reject(new Error(`closed ${e.code}`)); }; }),
    opened: new Promise((resolve, reject) => { sock.onopen = resolve; setTimeout(() => reject(new Error('sockjs open timeout')), 8000); }),
    send(obj) { sock.send(JSON.stringify(obj)); },
    next(pred = () => true, ms = 8000) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      if (closed) return Promise.reject(new Error(`closed ${closed.code}`));
      return new Promise((resolve, reject) => {
        const w = { pred, resolve, reject };
        w.t = setTimeout(() => { waiters.splice(waiters.indexOf(w), 1); reject(new Error(`no matching frame; inbox: ${JSON.stringify(inbox).slice(0, 300)}`)); }, ms);
        waiters.push(w);
      });
    },
  };
  sock.onmessage = (e) => {
    const f = JSON.parse(e.data);
    const w = waiters.find((x) => x.pred(f));
    if (w) { waiters.splice(waiters.indexOf(w), 1); clearTimeout(w.t); w.resolve(f); } else inbox.push(f);
  };
  return c;
}

async function post(url, body, headers = {}) {
  const res = await fetch(url, { method: 'POST', body, headers });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

describe('SockJS server', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, base;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], users: [['app1', 'pw']], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { auth_timeout_ms: 20000 } });
    base = `${gw.httpUrl}/sockjs/chat`;
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  const cases = [
    ['websocket', '/sockjs/chat'],
    ['xhr-streaming', '/sockjs/getUserMsg'],
    ['xhr-polling', '/sockjs/getChatList'],
    ['eventsource', '/sockjs/chat'],
  ];
  for (const [transport, prefix] of cases) {
    it(`sockjs-client over ${transport} (${prefix}): hello, send, receive from another user`, async () => {
      const u = `sj_${transport.replace('-', '')}`;
      const c = sjsOpen(`${gw.httpUrl}${prefix}`, [transport]);
      await c.opened;
      assert.equal(c.sock.transport, transport);
      c.send({ op: 'hello', v: 1, user: u });
      assert.equal((await c.next((f) => f.op === 'welcome')).jid, `${u}@${GW}`);
      const peer = await openWs(gw.wsUrl);
      await peer.hello(`peer_${u}`);
      // peer → sockjs user, through Prosody and back down the component stream.
      peer.send({ op: 'send', to: u, body: 'hi <sockjs> é 😀', cid: 'p1' });
      assert.equal((await peer.next((f) => f.op === 'ack')).cid, 'p1');
      const m = await c.next((f) => f.op === 'msg');
      assert.equal(m.body, 'hi <sockjs> é 😀');
      assert.equal(m.from, `peer_${u}@${GW}`);
      // sockjs user → peer.
      c.send({ op: 'send', to: `peer_${u}`, body: 'back', cid: 's1' });
      assert.equal((await c.next((f) => f.op === 'ack')).cid, 's1');
      assert.equal((await peer.next((f) => f.op === 'msg')).body, 'back');
      c.sock.close();
      await c.closed;
      await peer.close();
    });
  }

  it('GET /info, greeting, iframe.html with ETag', async () => {
    const res = await fetch(`${base}/info`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /application\/json/);
    assert.match(res.headers.get('cache-control'), /no-store/);
    const info = await res.json();
    assert.equal(info.websocket, true);
    assert.equal(info.cookie_needed, false);
    // The truth: the allowed origins (host:port), not '*:*'.
    assert.deepEqual(info.origins, gw.settings.allowed_origins.split(', ').map((o) => o.replace(/^https?:\/\//, '')));
    assert.equal(typeof info.entropy, 'number');
    assert.equal(await (await fetch(base)).text(), 'Welcome to SockJS!\n');
    const fr = await fetch(`${base}/iframe.html`);
    assert.equal(fr.status, 200);
    const etag = fr.headers.get('etag');
    assert.ok(etag);
    assert.match(await fr.text(), /src="\/sockjs\/sockjs\.min\.js"/);
    const js = await fetch(`${gw.httpUrl}/sockjs/sockjs.min.js`);
    assert.equal(js.status, 200);
    assert.match(await js.text(), /SockJS/);
    const again = await fetch(`${base}/iframe-1.6.1.html`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
  });

  it('xhr + xhr_send round trip, c[2010] for a second receiver, 404 for an unknown session', async () => {
    const s = `${base}/000/rt${Date.now()}`;
    assert.equal((await post(`${s}/xhr`)).text, 'o\n');
    const send = await post(`${s}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'hello', v: 1, user: 'rt1' })]));
    assert.equal(send.status, 204);
    const a = await post(`${s}/xhr`);
    assert.match(a.text, /^a\[/);
    assert.equal(JSON.parse(JSON.parse(a.text.slice(1))[0]).op, 'welcome');
    // A receiver waits; a second one is refused with 2010 and the first stays.
    const first = post(`${s}/xhr`);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await post(`${s}/xhr`)).text, 'c[2010,"Another connection still open"]\n');
    await post(`${s}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'ping', t: 7 })]));
    const pong = JSON.parse(JSON.parse((await first).text.slice(1))[0]);
    assert.deepEqual(pong, { op: 'pong', t: 7 });
    assert.equal((await post(`${base}/000/nosuch/xhr_send`, '["x"]')).status, 404);
    assert.equal((await post(`${s}/xhr_send`, '')).status, 500);
    assert.equal((await post(`${s}/xhr_send`, '[broken')).text, 'Broken JSON encoding.');
  });

  it('jsonp: callback required and validated, frames wrapped in the callback', async () => {
    const s = `${base}/000/jp${Date.now()}`;
    assert.equal((await fetch(`${s}/jsonp`)).status, 500);
    const bad = await fetch(`${s}/jsonp?c=${encodeURIComponent('alert(1);x')}`);
    assert.equal(bad.status, 500);
    assert.doesNotMatch(await bad.text(), /alert/);
    const ok = await fetch(`${s}/jsonp?c=_jp.a1`);
    assert.match(ok.headers.get('content-type'), /application\/javascript/);
    assert.equal(await ok.text(), '/**/_jp.a1("o");\r\n');
    const form = `d=${encodeURIComponent(JSON.stringify([JSON.stringify({ op: 'hello', v: 1, user: 'jp1' })]))}`;
    const sent = await post(`${s}/jsonp_send`, form, { 'Content-Type': 'application/x-www-form-urlencoded' });
    assert.equal(sent.text, 'ok');
    const msg = await (await fetch(`${s}/jsonp?c=cb`)).text();
    assert.match(msg, /^\/\*\*\/cb\("a\[/);
    assert.match(msg, /welcome/);
  });

  it('heartbeat: a waiting poll gets h after 25 s', { timeout: 40000 }, async () => {
    const s = `${base}/000/hb${Date.now()}`;
    assert.equal((await post(`${s}/xhr`)).text, 'o\n');
    await post(`${s}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'hello', v: 1, user: 'hb1' })]));
    await post(`${s}/xhr`); // welcome
    const t0 = Date.now();
    assert.equal((await post(`${s}/xhr`)).text, 'h\n');
    const dt = Date.now() - t0;
    assert.ok(dt > 20000 && dt < 25000 + scaled(5000), `heartbeat after ${dt} ms`);
  });

  it('session timeout: no receiver for 5 s closes the session', { timeout: 20000 }, async () => {
    const s = `${base}/000/to${Date.now()}`;
    assert.equal((await post(`${s}/xhr`)).text, 'o\n');
    assert.equal((await post(`${s}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'hello', v: 1, user: 'to1' })]))).status, 204);
    assert.match((await post(`${s}/xhr`)).text, /welcome/);
    // Nothing waits on the session now (sends do not count): it must be gone after 5 s,
    // and not before.
    const t0 = Date.now();
    await until('session closed', 15000, async () => (await post(`${s}/xhr_send`, '["{\\"op\\":\\"ping\\"}"]')).status === 404,
      undefined, 250);
    assert.ok(Date.now() - t0 > 4500, `closed after ${Date.now() - t0} ms`);
  });

  it('a bad hello is answered with error and c[4401,...]', async () => {
    const s = `${base}/000/bh${Date.now()}`;
    await post(`${s}/xhr`);
    await post(`${s}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'send', to: 'x', body: 'y', cid: 'z' })]));
    const a = await post(`${s}/xhr`);
    assert.match(a.text, /not_authenticated/);
    assert.match((await post(`${s}/xhr`)).text, /^c\[4401,/);
  });
});
