// The statements of docs/protocol.md that no other test checks (issue 11, "docs that made
// a stranger guess"), each against the real gateway in same-JID mode with Prosody and its
// companion, PostgreSQL and an XMPP app user. Small limits make the bounds quick to reach.
import { after, before, describe, it } from '../lib/test.mjs';
import { until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import WebSocket from 'ws';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { GATEWAY_BIN, gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, nextMessage, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const J = (u) => `${u}@${DOMAIN}`;
const MAX_BODY = 1000;
const MAX_FRAME = 2000;

describe('protocol as documented', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, gw, app;
  const open = [];
  const tab = async (user, extra) => {
    const t = await openWs(gw.wsUrl);
    open.push(t);
    if (user) assert.equal((await t.hello(user, extra)).op, 'welcome');
    return t;
  };
  const count = async (where) => Number(await pg.psql(`SELECT count(*) FROM messages WHERE ${where}`));

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    prosody = await startProsody({
      domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], users: [['app1', 'pw']],
      companion: { gateway: GW }, modules: ['offline'], logLevel: 'info',
    });
    gw = await startImgw({
      prosody,
      config: {
        mode: 'samejid', pg_conninfo: `"${pg.connString}"`, max_body_bytes: MAX_BODY,
        max_frame_bytes: MAX_FRAME, session_queue_max: 8, ticket_secret: 'k'.repeat(32),
        allowed_domains: `"${DOMAIN}, ${GW}, elsewhere.example"`,
      },
    });
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await Promise.all(open.map((t) => t.close().catch(() => {})));
    await stopAll(app);
    await gw?.cleanup();
    await prosody?.cleanup();
    await pg?.cleanup();
  });

  it('welcome.jid is the bare JID of the XMPP domain in same-JID mode; a user id must be lower case, addresses are folded', async () => {
    const mixed = await openWs(gw.wsUrl);
    open.push(mixed);
    const e = await mixed.hello('MiXeD.Case');
    assert.deepEqual([e.op, e.code], ['error', 'bad_hello']);
    assert.equal((await mixed.closed).code, 4401);
    const t = await openWs(gw.wsUrl);
    open.push(t);
    const w = await t.hello('mixed.case');
    assert.deepEqual([w.op, w.v, w.user, w.jid], ['welcome', 1, 'mixed.case', J('mixed.case')]);
    const b = await tab('lc_peer');
    t.send({ op: 'send', to: 'LC_Peer', body: 'case', cid: 'lc1' });
    const ack = await t.next((f) => f.op === 'ack');
    const m = await b.next((f) => f.op === 'msg');
    assert.deepEqual([m.id, m.from, m.to, m.conv], [ack.id, J('mixed.case'), J('lc_peer'), J('mixed.case')]);
  });

  it('hello: v 2 is answered with v 1; last_id "0" or a number and a second hello are refused', async () => {
    const t = await openWs(gw.wsUrl);
    open.push(t);
    t.send({ op: 'hello', v: 2, user: 'v2user' });
    assert.equal((await t.next((f) => f.op === 'welcome')).v, 1);
    t.send({ op: 'hello', v: 1, user: 'other' });
    const again = await t.next();
    assert.deepEqual([again.op, again.code], ['error', 'bad_frame']);
    t.send({ op: 'ping', t: 1 });
    assert.deepEqual(await t.next(), { op: 'pong', t: 1, __binary: false }, 'the session stays open');
    for (const last of ['0', 384022771568476160]) {
      const x = await openWs(gw.wsUrl);
      open.push(x);
      x.send({ op: 'hello', v: 1, user: 'lastid', last_id: last });
      const e = await x.next();
      assert.deepEqual([e.op, e.code], ['error', 'bad_hello'], JSON.stringify(last));
      assert.equal((await x.closed).code, 4401);
    }
  });

  it('a ticket from `imgw ticket` opens a session', async () => {
    const ticket = await new Promise((resolve, reject) => execFile(GATEWAY_BIN, ['--config', gw.confPath, 'ticket', 'tix', '60'],
      (err, out, errText) => (err ? reject(new Error(errText)) : resolve(out.trim()))));
    assert.match(ticket, /^tix:\d+:[0-9a-f]{64}$/);
    const t = await openWs(gw.wsUrl);
    open.push(t);
    const w = await t.hello({ ticket });
    assert.deepEqual([w.op, w.user], ['welcome', 'tix']);
  });

  it('cid is 1-64 printable ASCII characters; errors carry "op":"error" and the cid', async () => {
    const t = await tab('cids');
    for (const [cid, ok] of [['x'.repeat(64), true], ['~!#{}', true], ['x'.repeat(65), false], ['a b', false], ['é', false], ['', false]]) {
      t.send({ op: 'send', to: 'cidpeer', body: 'c', cid });
      const f = await t.next((x) => x.op === 'ack' || x.op === 'error');
      assert.equal(f.op, ok ? 'ack' : 'error', JSON.stringify(cid));
      if (!ok) assert.equal(f.code, 'bad_frame');
    }
  });

  it('max_body_bytes bounds the body (bad_frame), max_frame_bytes the frame as sent (1009)', async () => {
    const t = await tab('bounds');
    t.send({ op: 'send', to: 'bpeer', body: 'é'.repeat(MAX_BODY / 2), cid: 'b1' });
    assert.equal((await t.next((f) => f.cid === 'b1')).op, 'ack', 'exactly max_body_bytes bytes');
    t.send({ op: 'send', to: 'bpeer', body: 'x'.repeat(MAX_BODY + 1), cid: 'b2' });
    const e = await t.next((f) => f.cid === 'b2');
    assert.deepEqual([e.op, e.code], ['error', 'bad_frame']);
    // The same body within max_body_bytes, but escaped as \u00e9 by the client: 6 bytes each.
    const raw = JSON.stringify({ op: 'send', to: 'bpeer', cid: 'b3', body: 'é'.repeat(MAX_BODY / 2) }).replace(/é/g, '\\u00e9');
    assert.ok(raw.length > MAX_FRAME);
    t.send(raw);
    assert.equal((await t.closed).code, 1009);
  });

  it('a session whose queue passes session_queue_max is closed 1008 "overloaded", without an error frame', async () => {
    // A SockJS polling session that does not poll: what the gateway sends it piles up in
    // its queue (a WebSocket would first fill megabytes of socket buffers).
    const sid = `${gw.httpUrl}/sockjs/chat/000/slow${Date.now()}`;
    const post = (p, body) => fetch(`${sid}/${p}`, { method: 'POST', body }).then(async (r) => ({ status: r.status, text: await r.text() }));
    assert.equal((await post('xhr')).text, 'o\n');
    assert.equal((await post('xhr_send', JSON.stringify([JSON.stringify({ op: 'hello', v: 1, user: 'slowreader' })]))).status, 204);
    const s = await tab('fastsender');
    for (let i = 0; i < 12; i++) {
      s.send({ op: 'send', to: 'slowreader', body: `m${i}`, cid: `o${i}` });
      await s.next((f) => f.cid === `o${i}`);
    }
    const frames = [];
    let close = null;
    await until('the close frame', 10000, async () => {
      const r = await post('xhr');
      if (r.text.startsWith('a')) frames.push(...JSON.parse(r.text.slice(1)).map((x) => JSON.parse(x)));
      if (r.text.startsWith('c')) close = JSON.parse(r.text.slice(1));
      return close;
    });
    assert.deepEqual(close, [1008, 'overloaded']);
    assert.ok(frames.length <= 8, `at most session_queue_max frames before the close: ${frames.length}`);
    assert.ok(!frames.some((f) => f.op === 'error'), 'no error frame');
  });

  it('a binary frame closes 1003; an upgrade asking only for an unknown subprotocol is refused', async () => {
    const t = await tab('binary');
    t.ws.send(Buffer.from([1, 2, 3]));
    assert.equal((await t.closed).code, 1003);
    const ws = new WebSocket(gw.wsUrl, ['nosuch.v9']);
    const r = await new Promise((resolve) => {
      ws.once('open', () => resolve({ open: true, protocol: ws.protocol }));
      ws.once('unexpected-response', (req, res) => resolve({ status: res.statusCode }));
      ws.once('error', (err) => resolve({ error: err.message }));
    });
    ws.terminate();
    assert.ok(!r.open, `refused: ${JSON.stringify(r)}`);
    const ok = new WebSocket(gw.wsUrl, ['imgw.v1']);
    await new Promise((resolve, reject) => { ok.once('open', resolve); ok.once('error', reject); });
    assert.equal(ok.protocol, 'imgw.v1');
    ok.close();
  });

  it('CR and CRLF reach a web recipient as LF; the sender\'s tabs and history keep the original', async () => {
    const a = await tab('crsender');
    const a2 = await tab('crsender');
    const b = await tab('crpeer');
    const body = 'one\r\ntwo\rthree\nfour';
    a.send({ op: 'send', to: 'crpeer', body, cid: 'cr1' });
    await a.next((f) => f.op === 'ack');
    assert.equal((await b.next((f) => f.op === 'msg')).body, 'one\ntwo\nthree\nfour');
    assert.equal((await a2.next((f) => f.op === 'msg')).body, body);
    b.send({ op: 'history', with: 'crsender' });
    assert.equal((await b.next((f) => f.op === 'history')).msgs[0].body, body);
  });

  it('a send to a domain outside allowed_domains is refused; to an allowed one it is acked and stored, the server\'s bounce dropped', async () => {
    const t = await tab('abroad');
    t.send({ op: 'send', to: 'someone@nowhere.example', body: 'not here', cid: 'f0' });
    const refused = await t.next((f) => f.op === 'ack' || f.op === 'error');
    assert.deepEqual([refused.op, refused.code, refused.cid], ['error', 'domain_not_allowed', 'f0']);
    t.send({ op: 'send', to: 'someone@elsewhere.example', body: 'far away', cid: 'f1' });
    const ack = await t.next((f) => f.op === 'ack' || f.op === 'error');
    assert.equal(ack.op, 'ack');
    assert.equal(await count(`id = ${ack.id} AND recipient = 'someone@elsewhere.example'`), 1);
    // The server cannot deliver it (no server-to-server here) and bounces it to the
    // sender's web resource: nothing of that reaches the browser.
    assert.ok(await t.none(() => true, 1500), 'nothing but the ack');
  });

  it('XMPP messages to a web user: offline but known, stored and recovered; never logged in, refused by the server', async () => {
    const known = await tab('offlineweb');
    known.send({ op: 'send', to: 'app1', body: 'hello app', cid: 'k1' });
    const seen = (await known.next((f) => f.op === 'ack')).id;
    await known.close();
    await app.send(xml('message', { to: J('offlineweb'), type: 'chat', id: 'to-offline' }, xml('body', {}, 'while you were away')));
    await until('stored from the companion copy', 10000, async () => (await count(`recipient = '${J('offlineweb')}' AND body = 'while you were away'`)) === 1);
    const back = await tab('offlineweb', { last_id: seen });
    const m = await back.next((f) => f.op === 'msg');
    assert.deepEqual([m.body, m.from, m.recovered], ['while you were away', J('app1'), true]);
    // Nobody by that name ever logged in: no XMPP account, so the server bounces it.
    await app.send(xml('message', { to: J('neverseen'), type: 'chat', id: 'to-nobody' }, xml('body', {}, 'anyone?')));
    const bounce = await nextMessage(app, (s) => s.attrs.type === 'error' && s.attrs.id === 'to-nobody', 10000);
    assert.ok(bounce.getChild('error'));
    assert.equal(await count(`recipient = '${J('neverseen')}'`), 0);
  });
});
