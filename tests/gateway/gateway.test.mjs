// End-to-end tests of the gateway core against a real Prosody, real XMPP clients and
// real WebSocket clients. Run: node --test tests/gateway/
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import net from 'node:net';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until } from '../lib/bounded.mjs';
import { login, nextMessage, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const SECRET = 's3cret';
const TRICKY = `<b>&amp;</b> "q" 'a' ]]> \\ ünïcödé 中文 😀\ttab\nnl`;

let cid = 0;
const nextCid = () => `c${++cid}`;

describe('gateway core', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, app;

  before(async () => {
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW, secret: SECRET }],
      users: [['app1', 'pw'], ['app2', 'pw']],
      modules: ['offline'],
      logLevel: 'info',
    });
    gw = await startImgw({ prosody, config: { max_sessions_per_user: 3, auth_timeout_ms: 1500, max_frame_bytes: 4096, max_body_bytes: 2048, link_queue_max: 50 } });
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(app);
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('delivers an app user message to every tab of a web user, body byte for byte', async () => {
    const t1 = await openWs(gw.wsUrl);
    const t2 = await openWs(gw.wsUrl);
    assert.equal((await t1.hello('alice')).op, 'welcome');
    const w = await t2.hello('alice');
    assert.equal(w.jid, `alice@${GW}`);
    await app.send(xml('message', { to: `alice@${GW}`, type: 'chat', id: 'm1' }, xml('body', {}, TRICKY)));
    for (const t of [t1, t2]) {
      const m = await t.next((f) => f.op === 'msg');
      assert.equal(m.body, TRICKY);
      assert.equal(m.from, `app1@${DOMAIN}`);
      assert.equal(m.conv, `app1@${DOMAIN}`);
      assert.equal(m.to, `alice@${GW}`);
      assert.match(m.id, /^\d+$/);
    }
    await t1.close();
    await t2.close();
  });

  it('sends a web user message to an app user as type chat, acked, echoed to other tabs', async () => {
    const t1 = await openWs(gw.wsUrl);
    const t2 = await openWs(gw.wsUrl);
    await t1.hello('bob');
    await t2.hello('bob');
    const got = nextMessage(app, (m) => m.attrs.from === `bob@${GW}`, 5000);
    const c = nextCid();
    t1.send({ op: 'send', to: `app1@${DOMAIN}`, body: TRICKY, cid: c });
    const ack = await t1.next((f) => f.op === 'ack');
    assert.equal(ack.cid, c);
    assert.equal(ack.queued, false);
    const m = await got;
    assert.equal(m.attrs.type, 'chat');
    assert.equal(m.getChildText('body'), TRICKY);
    // The stanza id is the message id signed for its sender (msgid.h): '<id>.<24 hex>'.
    assert.match(m.attrs.id, new RegExp(`^${ack.id}\\.[0-9a-f]{24}$`));
    const echo = await t2.next((f) => f.op === 'msg');
    assert.equal(echo.cid, c);
    assert.equal(echo.body, TRICKY);
    assert.equal(echo.conv, `app1@${DOMAIN}`);
    assert.ok(await t1.none((f) => f.op === 'msg'), 'the sending tab gets no echo');
    await t1.close();
    await t2.close();
  });

  it('carries pictures as XEP-0066 out-of-band URLs both ways', async () => {
    const t = await openWs(gw.wsUrl);
    await t.hello('pic');
    const url = 'http://127.0.0.1/files/0123abcd.png';
    const got = nextMessage(app, (m) => m.attrs.from === `pic@${GW}`, 5000);
    t.send({ op: 'send', to: `app1@${DOMAIN}`, body: url, cid: 'img1', kind: 'image' });
    await t.next((f) => f.op === 'ack');
    const m = await got;
    assert.equal(m.getChildText('body'), url);
    assert.equal(m.getChild('x', 'jabber:x:oob')?.getChildText('url'), url);
    await app.send(xml('message', { to: `pic@${GW}`, type: 'chat' }, xml('body', {}, url), xml('x', { xmlns: 'jabber:x:oob' }, xml('url', {}, url))));
    const back = await t.next((f) => f.op === 'msg');
    assert.equal(back.kind, 'image');
    assert.equal(back.body, url);
    await app.send(xml('message', { to: `pic@${GW}`, type: 'chat' }, xml('body', {}, 'plain text')));
    assert.equal((await t.next((f) => f.op === 'msg')).kind, 'text');
    await t.close();
  });

  it('routes web to web through the XMPP server with the same id in ack and msg', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('carol');
    await b.hello('dave');
    a.send({ op: 'send', to: 'dave', body: 'hi dave', cid: 'x1' });
    const ack = await a.next((f) => f.op === 'ack');
    const m = await b.next((f) => f.op === 'msg');
    assert.equal(m.id, ack.id);
    assert.equal(m.from, `carol@${GW}`);
    assert.equal(m.body, 'hi dave');
    await a.close();
    await b.close();
  });

  it('marks messages of the open conversation and switches conversations', async () => {
    const t = await openWs(gw.wsUrl);
    await t.hello('erin');
    t.send({ op: 'open', with: `app1@${DOMAIN}` });
    assert.equal((await t.next((f) => f.op === 'opened')).with, `app1@${DOMAIN}`);
    const app2 = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app2', password: 'pw' });
    try {
      await app.send(xml('message', { to: `erin@${GW}`, type: 'chat' }, xml('body', {}, 'from 1')));
      let m = await t.next((f) => f.op === 'msg');
      assert.equal(m.open, true);
      await app2.send(xml('message', { to: `erin@${GW}`, type: 'chat' }, xml('body', {}, 'from 2')));
      m = await t.next((f) => f.op === 'msg');
      assert.equal(m.conv, `app2@${DOMAIN}`);
      assert.equal(m.open, false, 'other conversations arrive too, not marked open');
      t.send({ op: 'open', with: `app2@${DOMAIN}` });
      await t.next((f) => f.op === 'opened');
      await app2.send(xml('message', { to: `erin@${GW}`, type: 'chat' }, xml('body', {}, 'again')));
      m = await t.next((f) => f.op === 'msg');
      assert.equal(m.open, true);
      t.send({ op: 'open', with: null });
      assert.equal((await t.next((f) => f.op === 'opened')).with, null);
    } finally {
      await stopAll(app2);
      await t.close();
    }
  });

  it('answers bad frames with error frames and keeps the session', async () => {
    const t = await openWs(gw.wsUrl);
    await t.hello('frank');
    const cases = [
      ['{not json', 'bad_json'],
      ['[1,2]', 'bad_json'],
      [JSON.stringify({ op: 'teleport' }), 'unknown_op'],
      [JSON.stringify({ op: 'send', to: 'x' }), 'bad_frame'],
      [JSON.stringify({ op: 'send', to: 'x y', body: 'b', cid: 'k1' }), 'bad_recipient'],
      [JSON.stringify({ op: 'send', to: 'x', body: 'ctl\u0001', cid: 'k2' }), 'bad_frame'],
      [JSON.stringify({ op: 'send', to: 'x', body: 'y'.repeat(2049), cid: 'k3' }), 'bad_frame'],
    ];
    for (const [frame, code] of cases) {
      t.send(frame);
      const e = await t.next((f) => f.op === 'error');
      assert.equal(e.code, code, `frame ${frame.slice(0, 40)}`);
    }
    t.send({ op: 'ping', t: { n: 1, s: 'a/b' } });
    assert.deepEqual((await t.next((f) => f.op === 'pong')).t, { n: 1, s: 'a/b' });
    await t.close();
  });

  it('closes oversized frames with 1009, invalid UTF-8 with 1007, binary with 1003', async () => {
    const big = await openWs(gw.wsUrl);
    await big.hello('gina');
    big.send(JSON.stringify({ op: 'ping', t: 'z'.repeat(5000) }));
    assert.equal((await big.closed).code, 1009);

    const bad = await openWs(gw.wsUrl);
    await bad.hello('gina');
    bad.ws.send(Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), { binary: false });
    assert.equal((await bad.closed).code, 1007);

    const bin = await openWs(gw.wsUrl);
    await bin.hello('gina');
    bin.ws.send(Buffer.from('{"op":"ping"}'), { binary: true });
    assert.equal((await bin.closed).code, 1003);

    // Everyone else is unaffected.
    const ok = await openWs(gw.wsUrl);
    assert.equal((await ok.hello('gina')).op, 'welcome');
    await ok.close();
  });

  it('requires hello first, times out silent sessions, limits sessions per user', async () => {
    const early = await openWs(gw.wsUrl);
    early.send({ op: 'send', to: 'x', body: 'b', cid: 'c' });
    assert.equal((await early.next((f) => f.op === 'error')).code, 'not_authenticated');
    assert.equal((await early.closed).code, 4401);

    const silent = await openWs(gw.wsUrl);
    assert.equal((await silent.closed).code, 4408);

    const tabs = [];
    for (let i = 0; i < 3; i++) {
      const t = await openWs(gw.wsUrl);
      assert.equal((await t.hello('hank')).op, 'welcome');
      tabs.push(t);
    }
    const extra = await openWs(gw.wsUrl);
    assert.equal((await extra.hello('hank')).code, 'too_many_sessions');
    assert.equal((await extra.closed).code, 4429);
    await Promise.all(tabs.map((t) => t.close()));
  });

  it('refuses WebSocket upgrades from origins not allowed', async () => {
    await assert.rejects(openWs(gw.wsUrl, { origin: 'https://evil.example' }), (err) => err.status === 403);
    const ok = await openWs(gw.wsUrl, { origin: `http://127.0.0.1:${gw.port}` });
    await ok.close();
  });

  it('drops error, headline and body-less stanzas and messages to users without sessions', async () => {
    const t = await openWs(gw.wsUrl);
    await t.hello('ivan');
    await app.send(xml('message', { to: 'nobody-here@' + GW, type: 'chat' }, xml('body', {}, 'lost')));
    await app.send(xml('message', { to: `ivan@${GW}`, type: 'headline' }, xml('body', {}, 'headline')));
    await app.send(xml('message', { to: `ivan@${GW}`, type: 'chat' }, xml('subject', {}, 'no body')));
    await app.send(xml('message', { to: `ivan@${GW}`, type: 'error' }, xml('body', {}, 'err')));
    await app.send(xml('message', { to: `ivan@${GW}`, type: 'chat' }, xml('body', {}, 'marker')));
    const first = await t.next(() => true);
    assert.equal(first.op, 'msg');
    assert.equal(first.body, 'marker', 'nothing came before the marker');
    await t.close();
  });

  it('answers disco#info, disco#items and ping, and service-unavailable otherwise', async () => {
    const info = await app.iqCaller.request(xml('iq', { type: 'get', to: GW }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), 5000);
    const features = info.getChild('query').getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes('urn:xmpp:ping'));
    const items = await app.iqCaller.request(xml('iq', { type: 'get', to: GW }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#items' })), 5000);
    assert.ok(items.getChild('query'));
    await app.iqCaller.request(xml('iq', { type: 'get', to: GW }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    await assert.rejects(
      app.iqCaller.request(xml('iq', { type: 'get', to: GW }, xml('query', { xmlns: 'jabber:iq:version' })), 5000),
      (err) => err.condition === 'service-unavailable');
  });

  it('queues sends while the XMPP server restarts and delivers each once, in order', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('judy');
    await b.hello('kim');
    a.send({ op: 'send', to: 'kim', body: 'before', cid: 'r0' });
    assert.equal((await b.next((f) => f.op === 'msg')).body, 'before');

    await prosody.stop();
    await gw.waitLink('down', 10000);
    const N = 20;
    for (let i = 1; i <= N; i++) a.send({ op: 'send', to: 'kim', body: `during ${i}`, cid: `r${i}` });
    for (let i = 1; i <= N; i++) {
      const ack = await a.next((f) => f.op === 'ack' && f.cid === `r${i}`);
      assert.equal(ack.queued, true);
    }
    assert.equal((await gw.health()).link_queue, N);
    // A retry of a send that still waits says so.
    a.send({ op: 'send', to: 'kim', body: 'during 1', cid: 'r1' });
    assert.equal((await a.next((f) => f.op === 'ack' && f.cid === 'r1')).queued, true, 'retry of a waiting send: queued');
    await prosody.start();
    await gw.waitLink('up', 15000);
    for (let i = 1; i <= N; i++) {
      const m = await b.next((f) => f.op === 'msg', 10000);
      assert.equal(m.body, `during ${i}`);
    }
    assert.ok(await b.none((f) => f.op === 'msg', 500), 'no duplicates');
    await a.close();
    await b.close();
    // The app user's session did not survive the restart; log in again for later tests.
    await stopAll(app);
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  it('refuses sends with queue_full once the bounded queue is full', async () => {
    const a = await openWs(gw.wsUrl);
    await a.hello('leo');
    await prosody.stop();
    await gw.waitLink('down', 10000);
    const limit = 50;
    for (let i = 0; i < limit + 3; i++) a.send({ op: 'send', to: 'kim', body: `q${i}`, cid: `q${i}` });
    const answers = [];
    for (let i = 0; i < limit + 3; i++) answers.push(await a.next((f) => (f.op === 'ack' || f.op === 'error') && f.cid === `q${i}`));
    assert.equal(answers.filter((f) => f.op === 'ack').length, limit);
    const refused = answers.filter((f) => f.op === 'error');
    assert.equal(refused.length, 3);
    assert.ok(refused.every((f) => f.code === 'queue_full'));
    await prosody.start();
    await gw.waitLink('up', 15000);
    await a.close();
    await stopAll(app);
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  it('serves /health and /metrics', async () => {
    const h = await gw.health();
    assert.equal(h.link, 'up');
    const text = await (await fetch(`${gw.httpUrl}/metrics`)).text();
    assert.match(text, /^imgw_link_up 1$/m);
    assert.match(text, /^imgw_sent_total \d+$/m);
  });

  it('closes sessions with 1001 on SIGTERM and exits cleanly', async () => {
    const t = await openWs(gw.wsUrl);
    await t.hello('mia');
    const closed = t.closed;
    const r = await gw.stop('SIGTERM');
    assert.equal((await closed).code, 1001);
    assert.equal(r.code, 0);
    assert.match(gw.logText(), /stopped/);
    await gw.start();
  });
});

describe('tickets', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  const TS = 'ticket-secret-for-tests-0123456789';
  let prosody, gw;
  const ticket = (user, exp, secret = TS) => `${user}:${exp}:${createHmac('sha256', secret).update(`${user}:${exp}`).digest('hex')}`;
  const now = () => Math.floor(Date.now() / 1000);

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: SECRET }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { dev_mode: 'no', ticket_secret: TS } });
  });
  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('accepts a valid ticket', async () => {
    const t = await openWs(gw.wsUrl);
    const w = await t.hello({ ticket: ticket('nina', now() + 60) });
    assert.equal(w.op, 'welcome');
    assert.equal(w.user, 'nina');
    await t.close();
  });

  for (const [name, make, code] of [
    ['forged', () => ticket('nina', now() + 60, 'wrong-secret-wrong-secret'), 'bad_ticket'],
    ['altered user', () => 'mallory' + ticket('nina', now() + 60).slice(4), 'bad_ticket'],
    ['expired', () => ticket('nina', now() - 5), 'expired_ticket'],
    ['malformed', () => 'garbage', 'bad_ticket'],
  ]) {
    it(`refuses a ${name} ticket with 4401`, async () => {
      const t = await openWs(gw.wsUrl);
      const e = await t.hello({ ticket: make() });
      assert.equal(e.code, code);
      assert.equal((await t.closed).code, 4401);
    });
  }

  it('refuses a development-mode hello when dev mode is off', async () => {
    const t = await openWs(gw.wsUrl);
    assert.equal((await t.hello('nina')).code, 'bad_hello');
    assert.equal((await t.closed).code, 4401);
  });

  it('refuses to start in development mode off loopback', async () => {
    const { execFile } = await import('node:child_process');
    const { GATEWAY_BIN } = await import('../lib/imgw.mjs');
    const r = await new Promise((resolve) => execFile(GATEWAY_BIN, ['--check-config', '/dev/null'], {
      env: { ...process.env, IMGW_COMPONENT_SECRET: 'x', IMGW_DEV_MODE: 'yes', IMGW_LISTEN_HOST: '0.0.0.0' },
    }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
    assert.equal(r.code, 2);
    assert.match(r.stderr, /dev_mode/);
  });
});

describe('component link errors', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  it('logs not-authorized for a wrong secret and keeps retrying', async () => {
    const prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: SECRET }], logLevel: 'info' });
    const gw = await startImgw({ prosody, secret: 'wrong', waitLinkUp: false });
    try {
      const deadline = Date.now() + 10000;
      while (!/not-authorized/.test(gw.logText()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.match(gw.logText(), /stream error 'not-authorized'.*component_secret/);
      assert.equal((await gw.health()).link, 'down');
    } finally {
      await gw.cleanup();
      await prosody.cleanup();
    }
  });

  // A scripted XEP-0114 server: records what the gateway writes and answers the
  // handshake as told. Enough to see the stream header and the error handling.
  async function fakeServer(answer) {
    const seen = [];
    const srv = net.createServer((s) => {
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString();
        seen.push(d.toString());
        if (buf.includes('<stream:stream') && !s.opened) {
          s.opened = true;
          s.write("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='sid42' from='gw.shop.test'>");
        }
        if (buf.includes('</handshake>') && !s.answered) {
          s.answered = true;
          s.write(answer);
        }
      });
      s.on('error', () => {});
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    return { srv, seen, port: srv.address().port, text: () => seen.join('') };
  }

  for (const [cond, hint] of [['conflict', /allow_multiple/], ['not-authorized', /component_secret/],
    ['host-unknown', /component_domain/], ['internal-server-error', /no secret configured/]]) {
    it(`explains a '${cond}' stream error`, async () => {
      const fake = await fakeServer(`<stream:error><${cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`);
      const gw = await startImgw({ prosody: { componentPort: fake.port, domain: DOMAIN }, waitLinkUp: false });
      try {
        const deadline = Date.now() + 5000;
        while (!gw.logText().includes(`stream error '${cond}'`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
        const line = gw.logText().split('\n').find((l) => l.includes(`stream error '${cond}'`));
        assert.ok(line, `no log line for ${cond}`);
        assert.match(line, hint);
      } finally {
        await gw.cleanup();
        fake.srv.close();
      }
    });
  }

  it('puts allowMultiple in the stream header, computes the handshake, and sends keep-alives', async () => {
    const fake = await fakeServer('<handshake/>');
    const gw = await startImgw({ prosody: { componentPort: fake.port, domain: DOMAIN }, config: { allow_multiple: 'yes', keepalive_s: 1 } });
    try {
      assert.match(fake.text(), /<stream:stream[^>]*allowMultiple=["']true["']/);
      const digest = createHash('sha1').update('sid42s3cret').digest('hex');
      assert.ok(fake.text().includes(`<handshake>${digest}</handshake>`));
      // Openfire closes a silent component after 6 minutes: whitespace must flow.
      const deadline = Date.now() + 5000;
      const after = () => fake.text().split('</handshake>')[1] ?? '';
      while (!/^\s+/.test(after().replace(/<[^>]*>/g, 'x')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.match(after(), /^[^<]*\s/, 'a whitespace keep-alive after the handshake');
    } finally {
      await gw.cleanup();
      fake.srv.close();
    }
  });

  // A scripted server that keeps its sockets, so a test can write to the gateway later.
  async function liveServer({ before = '', answer = '<handshake/>' } = {}) {
    const conns = [];
    const srv = net.createServer((s) => {
      const c = { s, seen: '' };
      conns.push(c);
      s.on('data', (d) => {
        c.seen += d.toString();
        if (c.seen.includes('<stream:stream') && !c.opened) {
          c.opened = true;
          s.write(`<?xml version='1.0'?>${before}<stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='sid42' from='gw.shop.test'>`);
        }
        if (c.seen.includes('</handshake>') && !c.answered) {
          c.answered = true;
          s.write(answer);
        }
      });
      s.on('error', () => {});
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    return { srv, conns, port: srv.address().port, close: () => { for (const c of conns) c.s.destroy(); srv.close(); } };
  }

  it("takes Openfire 4.1's long handshake answer <handshake></handshake>", async () => {
    const fake = await liveServer({ answer: '<handshake></handshake>' });
    const gw = await startImgw({ prosody: { componentPort: fake.port, domain: DOMAIN } });
    try {
      assert.equal((await gw.health()).link, 'up');
    } finally {
      await gw.cleanup();
      fake.close();
    }
  });

  it('answers a DTD with a restricted-xml stream error and connects again', async () => {
    const fake = await liveServer({ before: "<!DOCTYPE x [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;'>]>" });
    const gw = await startImgw({ prosody: { componentPort: fake.port, domain: DOMAIN }, waitLinkUp: false,
      config: { reconnect_min_ms: 100, reconnect_max_ms: 200 } });
    try {
      await until('a second connection', 10_000, () => fake.conns.length >= 2, () => gw.logText());
      assert.match(fake.conns[0].seen, /<stream:error><restricted-xml xmlns='urn:ietf:params:xml:ns:xmpp-streams'\/><\/stream:error><\/stream:stream>$/);
      assert.ok(!fake.conns[0].seen.includes('<handshake>'), 'no handshake on a stream with a DTD');
      assert.match(gw.logText(), /a DTD in the stream/);
    } finally {
      await gw.cleanup();
      fake.close();
    }
  });

  it('drops a stanza over 1 MiB and keeps the link: the next message arrives', async () => {
    const fake = await liveServer();
    const gw = await startImgw({ prosody: { componentPort: fake.port, domain: DOMAIN } });
    try {
      const t = await openWs(gw.wsUrl);
      assert.equal((await t.hello('olga')).op, 'welcome');
      const big = 'x'.repeat(3 << 20);
      fake.conns[0].s.write(`<message from='app1@${DOMAIN}' to='olga@${GW}' type='chat'><body>${big}</body></message>`);
      fake.conns[0].s.write(`<message from='app1@${DOMAIN}' to='olga@${GW}' type='chat'><body>after</body></message>`);
      const m = await t.next((f) => f.op === 'msg');
      assert.equal(m.body, 'after');
      assert.equal(fake.conns.length, 1, 'the same connection');
      assert.match(gw.logText(), /dropped a <message> stanza from the server: stanza too large/);
      await t.close();
    } finally {
      await gw.cleanup();
      fake.close();
    }
  });

  it('survives a peer that sends malformed XML', async () => {
    const srv = net.createServer((s) => {
      s.once('data', () => s.write("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='x1'><handshake/><message to='a@gw.shop.test'><body>unterminated</bod></message>"));
    });
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const gw = await startImgw({ prosody: { componentPort: srv.address().port, domain: DOMAIN }, waitLinkUp: false });
    try {
      const t = await openWs(gw.wsUrl);
      assert.equal((await t.hello('olga')).op, 'welcome');
      await t.close();
    } finally {
      await gw.cleanup();
      srv.close();
    }
  });
});
