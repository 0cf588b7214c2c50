// The browser client against the real gateway (component mode) with PostgreSQL, Redis
// and an upload directory, and a real Prosody: Node clients chat both ways over WebSocket
// and over the JSONP long-poll fallback, the outbox survives dropped connections and a
// gateway restart, retried cids are stored once, history/chats/read and recovery work end
// to end, pictures upload, and headless Chromium drives the demo page.
//
//   node --test tests/client/client_gateway.test.mjs
//
// Needs build/gateway/imgw (skipped with a message when it is not built), prosody,
// PostgreSQL 15, redis-server and /usr/bin/chromium. IMGW_KEEP_TMP=1 keeps the temp dirs
// (gateway and Prosody logs), IMGW_PRINT_LOGS=1 prints the gateway log.

import { describe, test, before, after } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { until as untilAsync } from '../lib/bounded.mjs';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';

import { GATEWAY_BIN, gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { webClient } from './webclient.mjs';

const CHROMIUM = process.env.IMGW_CHROMIUM || '/usr/bin/chromium';
const DOMAIN = 'shop.test';
const GW_DOMAIN = 'gw.shop.test';
const SECRET = 'client-test-secret';

/** A 1x1 PNG: the gateway checks a picture from its first to its last byte (chunk CRCs too). */
export const PNG_1X1 = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000'
  + '1f15c4890000000d49444154789c63f8cfc0f01f000500 01ff89993d1d0000000049454e44ae426082'.replace(/ /g, ''), 'hex');

const skip = gatewayBuilt()
  ? false
  : `gateway binary not built yet: ${GATEWAY_BIN} (build the C gateway first)`;
if (skip) console.log(`# SKIP client_gateway.test.mjs: ${skip}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const jidOf = (user) => `${user}@${GW_DOMAIN}`;

// ---- a TCP proxy that can lose traffic on purpose ----

/**
 * Forwards 127.0.0.1:port to the gateway. mode 'pass' forwards both ways; 'blackhole-up'
 * drops what the client sends, 'blackhole-down' what the gateway sends; cut() resets
 * every connection, which the client sees as a dropped socket.
 */
async function startProxy(targetPort) {
  const socks = new Set();
  const proxy = { mode: 'pass', connections: 0 };
  const server = net.createServer((down) => {
    proxy.connections++;
    const up = net.connect({ host: '127.0.0.1', port: targetPort });
    socks.add(down);
    socks.add(up);
    down.on('data', (d) => { if (proxy.mode !== 'blackhole-up') up.write(d); });
    up.on('data', (d) => { if (proxy.mode !== 'blackhole-down') down.write(d); });
    const end = () => { down.destroy(); up.destroy(); socks.delete(down); socks.delete(up); };
    down.on('close', end).on('error', end);
    up.on('close', end).on('error', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = server.address().port;
  proxy.cut = () => { for (const s of socks) s.resetAndDestroy?.() ?? s.destroy(); socks.clear(); };
  proxy.close = () => new Promise((r) => { proxy.cut(); server.close(r); });
  return proxy;
}

// ---- Node clients ----

/** A dev-mode client with a record of every message and ack it saw. */

/** Waits until `cond()` holds, polling; fails after `ms`. */
async function until(cond, ms, what) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A loopback port with nothing listening on it. */
async function freeClosedPort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Resolves when `c` has been welcomed again (the next `open` event). */
function nextOpen(c, ms = 15000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { off(); reject(new Error(`no welcome within ${ms} ms (state ${c.state})`)); }, ms);
    const off = c.on('open', (w) => { clearTimeout(t); off(); resolve(w); });
  });
}

/** Waits for `c` to be connected again if it is not. */
async function nextOpenIfNeeded(c) {
  if (c.state !== 'connected') await nextOpen(c);
}

describe('web client with the real gateway', { skip }, () => {
  let prosody;
  let gw;
  let xmpp;
  let pg;
  let redis;
  let uploadDir;
  const clients = [];
  const track = (c) => { clients.push(c); return c; };

  before(async () => {
    const { startProsody } = await import('../lib/prosody.mjs');
    xmpp = await import('../lib/xmpp.mjs');
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW_DOMAIN, secret: SECRET }],
      users: [['alice', 'pw']],
      logLevel: 'info',
    });
    const { startPostgres } = await import('../lib/postgres.mjs');
    const { startRedis } = await import('../lib/redis.mjs');
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    uploadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-client-up-'));
    gw = await startImgw({
      prosody, secret: SECRET,
      config: {
        pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port,
        upload_dir: uploadDir,
      },
    });
    gw.url = gw.wsUrl;
    gw.origin = gw.httpUrl;
  });

  after(async () => {
    for (const c of clients) c.close();
    if (gw && process.env.IMGW_PRINT_LOGS) console.log(gw.logText());
    await gw?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
    await prosody?.cleanup();
    if (uploadDir) fs.rmSync(uploadDir, { recursive: true, force: true });
  });

  test('two Node clients chat both ways', async () => {
    const bob = track(webClient(gw.url, 'bob'));
    const dave = track(webClient(gw.url, 'dave'));
    const [wb, wd] = await Promise.all([bob.connect(), dave.connect()]);
    assert.equal(wb.jid, jidOf('bob'));
    assert.equal(wd.user, 'dave');
    assert.equal(bob.state, 'connected');

    const ack = await bob.send('dave', 'hello dave');
    assert.match(ack.id, /^\d+$/);
    assert.equal(typeof ack.ts, 'number');
    const got = await dave.next((m) => m.body === 'hello dave');
    assert.equal(got.from, jidOf('bob'));
    assert.equal(got.to, jidOf('dave'));
    assert.equal(got.conv, jidOf('bob'));
    assert.equal(got.own, false);
    assert.equal(dave.unreadCount('bob'), 1, 'not the open conversation: unread');

    dave.open('bob');
    assert.equal(dave.unreadCount('bob'), 0);
    await dave.send(jidOf('bob'), 'hi bob, by JID');
    const back = await bob.next((m) => m.body === 'hi bob, by JID');
    assert.equal(back.from, jidOf('dave'));
    assert.equal(back.conv, jidOf('dave'));
    const further = await bob.send('dave', 'and a second one');
    await dave.next((m) => m.body === 'and a second one');
    assert.equal(dave.unreadCount('bob'), 0, 'open conversation: nothing unread');
    assert.ok(BigInt(further.id) > BigInt(ack.id), 'ids grow');
    assert.deepEqual(dave.chatList().map((x) => [x.conv, x.unread, x.last.body]),
      [[jidOf('bob'), 0, 'and a second one']]);
  });

  test('a web user and an XMPP user of the server exchange messages through the component', async () => {
    const alice = await xmpp.login({ port: prosody.c2sPort, domain: DOMAIN, username: 'alice', password: 'pw' });
    try {
      const erin = track(webClient(gw.url, 'erin'));
      await erin.connect();
      await erin.send(`alice@${DOMAIN}`, 'to xmpp alice');
      const st = await xmpp.nextMessage(alice, (m) => m.getChildText('body') === 'to xmpp alice', 10000);
      assert.equal(st.attrs.from.split('/')[0], jidOf('erin'));
      await alice.send(xmpp.xml('message', { to: jidOf('erin'), type: 'chat' }, xmpp.xml('body', {}, 'from xmpp alice')));
      const m = await erin.next((x) => x.body === 'from xmpp alice');
      assert.equal(m.conv, `alice@${DOMAIN}`);
    } finally {
      await alice.stop().catch(() => {});
    }
  });

  test('a send lost with the socket is re-sent with the same cid after the reconnect', async () => {
    const proxy = await startProxy(gw.port);
    try {
      const frank = track(webClient(`ws://127.0.0.1:${proxy.port}/ws`, 'frank'));
      const gina = track(webClient(gw.url, 'gina'));
      await Promise.all([frank.connect(), gina.connect()]);

      // The frame never reaches the gateway; the socket then dies.
      proxy.mode = 'blackhole-up';
      const p = frank.send('gina', 'lost on the way');
      await sleep(100);
      const [{ cid }] = frank.outbox;
      proxy.mode = 'pass';
      const reopened = nextOpen(frank);
      proxy.cut();
      await reopened;
      const ack = await p;
      assert.equal(ack.cid, cid);
      await gina.next((m) => m.body === 'lost on the way');
      await sleep(300);
      assert.equal(gina.bodies('lost on the way').length, 1);
      assert.equal(proxy.connections, 2);
    } finally {
      await proxy.close();
    }
  });

  test('a send whose ack was lost is re-sent with the same cid, stored and delivered once', async () => {
    const proxy = await startProxy(gw.port);
    try {
      const hank = track(webClient(`ws://127.0.0.1:${proxy.port}/ws`, 'hank'));
      const ivy = track(webClient(gw.url, 'ivy'));
      await Promise.all([hank.connect(), ivy.connect()]);

      // The gateway gets the send and delivers it; only the ack is lost.
      proxy.mode = 'blackhole-down';
      const p = hank.send('ivy', 'ack lost');
      await ivy.next((m) => m.body === 'ack lost');
      assert.equal(hank.outbox.length, 1, 'still unacknowledged');
      proxy.mode = 'pass';
      const reopened = nextOpen(hank);
      proxy.cut();
      await reopened;
      const ack = await p;
      assert.match(ack.id, /^\d+$/);
      await sleep(500);
      assert.equal(ivy.bodies('ack lost').length, 1,
        `the retried send (same cid) reached ivy ${ivy.bodies('ack lost').length} times`);
      assert.equal(ack.id, ivy.bodies('ack lost')[0].id, 'the retry is acked with the stored message id');
      const stored = await pg.psql("SELECT count(*) FROM messages WHERE body = 'ack lost'");
      assert.equal(Number(stored), 1, 'stored once');
    } finally {
      await proxy.close();
    }
  });

  test('sends made while the gateway is down go out after it restarts', async () => {
    const alice = await xmpp.login({ port: prosody.c2sPort, domain: DOMAIN, username: 'alice', password: 'pw', resource: 'restart' });
    try {
      const jack = track(webClient(gw.url, 'jack'));
      await jack.connect();
      const states = [];
      jack.on('state', ({ state }) => states.push(state));
      await gw.stop('SIGKILL');
      await sleep(200);
      assert.ok(['reconnecting', 'connecting'].includes(jack.state), jack.state);
      const p1 = jack.send(`alice@${DOMAIN}`, 'written while the gateway was down');
      const p2 = jack.send(`alice@${DOMAIN}`, 'and another');
      assert.equal(jack.outbox.length, 2);
      await gw.start();
      await Promise.all([p1, p2]);
      for (const body of ['written while the gateway was down', 'and another']) {
        await xmpp.nextMessage(alice, (m) => m.getChildText('body') === body, 15000);
      }
      assert.ok(states.includes('connected'));
      await sleep(300);
      assert.equal(xmpp.pendingStanzas(alice).filter((m) => m.is('message') && m.getChildText('body') === 'and another').length, 0,
        'no duplicate');
    } finally {
      await alice.stop().catch(() => {});
    }
  });

  test('a refused sign-in emits authfailed, rejects connect() and is not retried', async () => {
    const bad = webClient(gw.url, 'not a user id');
    const auth = [];
    const attempts = [];
    bad.on('authfailed', (a) => auth.push(a));
    bad.on('reconnecting', (r) => attempts.push(r));
    await assert.rejects(bad.connect(), (e) => e.code === 'bad_hello');
    await sleep(500);
    assert.equal(auth.length, 1);
    assert.equal(auth[0].error.code, 'bad_hello');
    assert.equal(attempts.length, 0);
    assert.equal(bad.state, 'closed');
  });

  test('the gateway closes with 4401 after bad_hello', async () => {
    const ws = new WebSocket(gw.url, 'imgw.v1');
    const frames = [];
    ws.on('open', () => ws.send(JSON.stringify({ op: 'hello', v: 1, user: 'bad user' })));
    ws.on('message', (d) => frames.push(JSON.parse(String(d))));
    const [code] = await new Promise((r) => ws.on('close', (...a) => r(a)));
    assert.equal(frames[0]?.code, 'bad_hello');
    assert.equal(code, 4401);
  });

  test('history pages, the chat list and read markers across two sessions of one user', async () => {
    const pat = track(webClient(gw.url, 'pat'));
    const pat2 = track(webClient(gw.url, 'pat'));
    const quinn = track(webClient(gw.url, 'quinn'));
    await Promise.all([pat.connect(), pat2.connect(), quinn.connect()]);
    const ids = [];
    for (let i = 1; i <= 7; i++) ids.push((await quinn.send('pat', `page ${i}`)).id);
    await pat.next((m) => m.body === 'page 7');
    await pat2.next((m) => m.body === 'page 7');
    assert.equal(pat.unreadCount('quinn'), 7, 'live messages counted');

    const newest = await pat.history('quinn', { limit: 3 });
    assert.equal(newest.with, jidOf('quinn'));
    assert.deepEqual(newest.msgs.map((m) => m.body), ['page 5', 'page 6', 'page 7']);
    assert.equal(newest.more, true);
    assert.equal(newest.msgs[0].own, false);
    const older = await pat.history('quinn', { before: newest.msgs[0].id, limit: 3 });
    assert.deepEqual(older.msgs.map((m) => m.body), ['page 2', 'page 3', 'page 4']);
    const oldest = await pat.history('quinn', { before: older.msgs[0].id, limit: 3 });
    assert.deepEqual(oldest.msgs.map((m) => m.body), ['page 1']);
    assert.equal(oldest.more, false);
    assert.equal(pat.lastId, ids.at(-1));

    const chats = await pat2.chats(10);
    const entry = chats.chats.find((c) => c.peer === jidOf('quinn'));
    assert.equal(entry.unread, 7);
    assert.equal(entry.last_id, ids.at(-1));
    assert.equal(pat2.unreadCount('quinn'), 7);
    assert.equal(pat2.chatList()[0].last.body, 'page 7');

    // Reading in one session clears the count in the other one too.
    const cleared = new Promise((resolve) => { const off = pat2.on('read', (r) => { off(); resolve(r); }); });
    const r = await pat.read('quinn', ids[4]);
    assert.equal(r.unread, 2);
    assert.deepEqual(await cleared, { conv: jidOf('quinn'), with: jidOf('quinn'), id: ids[4], unread: 2 });
    assert.equal(pat2.unreadCount('quinn'), 2);
    await pat.read('quinn', ids.at(-1));
    assert.equal((await pat2.chats()).chats.find((c) => c.peer === jidOf('quinn')).unread, 0);
    assert.equal(pat2.unreadCount('quinn'), 0);
  });

  test('recovery: a client cut off while messages arrive gets them after the reconnect, once', async () => {
    const proxy = await startProxy(gw.port);
    try {
      const rita = track(webClient(`ws://127.0.0.1:${proxy.port}/ws`, 'rita'));
      const sam = track(webClient(gw.url, 'sam'));
      await Promise.all([rita.connect(), sam.connect()]);
      await sam.send('rita', 'before the cut');
      await rita.next((m) => m.body === 'before the cut');
      const lastBefore = rita.lastId;
      const recovered = [];
      rita.on('recovered', (x) => recovered.push(x));
      // Frames to rita are lost from now on; the socket looks fine to both ends.
      proxy.mode = 'blackhole-down';
      for (let i = 1; i <= 3; i++) await sam.send('rita', `missed ${i}`);
      assert.equal(rita.bodies('missed 1').length, 0);
      proxy.mode = 'pass';
      const reopened = nextOpen(rita);
      proxy.cut();
      await reopened;
      for (let i = 1; i <= 3; i++) {
        const m = await rita.next((x) => x.body === `missed ${i}`);
        assert.equal(m.recovered, true);
      }
      await until(() => recovered.length === 1, 5000, 'the recovered frame');
      assert.equal(recovered[0].reset, false);
      assert.ok(recovered[0].count >= 3, `count ${recovered[0].count}`);
      assert.ok(BigInt(rita.lastId) > BigInt(lastBefore));
      assert.equal(rita.bodies('before the cut').length, 1, 'no duplicate of what was seen');
      assert.equal(rita.unreadCount('sam'), 4);
    } finally {
      await proxy.close();
    }
  });

  test('JSONP long-poll transport (fetch in Node): chat both ways, history, chats, read', async () => {
    const tom = track(webClient(gw.url, 'tom', { transports: ['jsonp'], pollTimeoutS: 10 }));
    const uma = track(webClient(gw.url, 'uma'));
    const w = await tom.connect();
    await uma.connect();
    assert.equal(w.jid, jidOf('tom'));
    assert.equal(tom.transportName, 'jsonp');
    const ack = await tom.send('uma', 'over long-poll, with & and ü');
    assert.match(ack.id, /^\d+$/);
    assert.equal((await uma.next((m) => m.body === 'over long-poll, with & and ü')).from, jidOf('tom'));
    await uma.send('tom', 'back to the poller');
    const got = await tom.next((m) => m.body === 'back to the poller');
    assert.equal(got.conv, jidOf('uma'));
    assert.equal(tom.unreadCount('uma'), 1);
    const h = await tom.history('uma', { limit: 10 });
    assert.deepEqual(h.msgs.map((m) => m.body), ['over long-poll, with & and ü', 'back to the poller']);
    assert.equal((await tom.chats()).chats[0].peer, jidOf('uma'));
    assert.equal((await tom.read('uma', got.id)).unread, 0);
    assert.equal(tom.unreadCount('uma'), 0);
    await assert.rejects(tom.send('x@@y', 'bad'), (e) => e.code === 'bad_recipient');
  });

  test('fallback: a WebSocket that cannot connect gives way to long-poll, with the same events', async () => {
    // Nothing listens on the WebSocket URL's port; the API is the real gateway's.
    const dead = await freeClosedPort();
    const vic = track(webClient(`ws://127.0.0.1:${dead}/ws`, 'vic', {
      apiUrl: `${gw.httpUrl}/api/`, fallbackAfter: 2, backoff: { minMs: 20, maxMs: 50 },
    }));
    const switched = [];
    vic.on('transport', (t) => switched.push(t));
    const wen = track(webClient(gw.url, 'wen'));
    await Promise.all([vic.connect(), wen.connect()]);
    assert.deepEqual(switched.map((t) => t.name), ['jsonp']);
    await wen.send('vic', 'reached through the fallback');
    await vic.next((m) => m.body === 'reached through the fallback');
    await vic.send('wen', 'answered through the fallback');
    await wen.next((m) => m.body === 'answered through the fallback');
  });

  test('pictures: uploadImage over WebSocket and long-poll, sendImage, the file is served', async () => {
    const xena = track(webClient(gw.url, 'xena'));
    const yuri = track(webClient(gw.url, 'yuri', { transports: ['jsonp'], pollTimeoutS: 10 }));
    await Promise.all([xena.connect(), yuri.connect()]);
    const up = await xena.uploadImage(new Blob([PNG_1X1], { type: 'image/png' }));
    assert.match(up.url, /^http:\/\/127\.0\.0\.1:\d+\/files\/[0-9a-f]{32}\.png$/);
    assert.equal(up.type, 'image/png');
    assert.equal(up.bytes, PNG_1X1.length);
    const res = await fetch(up.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), PNG_1X1);
    const sent = await yuri.sendImage('xena', PNG_1X1);
    assert.equal(sent.message.kind, 'image');
    const got = await xena.next((m) => m.body === sent.upload.url);
    assert.equal(got.from, jidOf('yuri'));
    const h = await xena.history('yuri');
    assert.equal(h.msgs.at(-1).kind, 'image', 'stored as an image message');
    assert.equal(h.msgs.at(-1).body, sent.upload.url);
    await assert.rejects(xena.uploadImage(new Blob(['not a picture at all'])), (e) => e.code === 'unsupported_type');
  });

  // The message goes from one web user to another through the XMPP server, where the kind
  // travels as a XEP-0066 out-of-band URL.
  test('a picture message arrives live with kind image', async () => {
    const zoe = track(webClient(gw.url, 'zoe'));
    const abe = track(webClient(gw.url, 'abe'));
    await Promise.all([zoe.connect(), abe.connect()]);
    const sent = await zoe.sendImage('abe', PNG_1X1);
    const got = await abe.next((m) => m.body === sent.upload.url);
    assert.equal(got.kind, 'image');
  });

  test('Chromium: the demo page signs in, shows an unread bubble, opens the chat and replies', async () => {
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
    const problems = [];
    try {
      const page = await browser.newPage({ viewport: { width: 1100, height: 680 } });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      // Once the test kills the gateway on purpose, the page's reconnect attempts that are
      // refused while it is down are expected; any other error is a problem.
      let outage = false;
      const expected = (text) => outage && /WebSocket connection to .* failed: .*ERR_CONNECTION_REFUSED/.test(text);
      page.on('console', (m) => { if (m.type() === 'error' && !expected(m.text())) problems.push(`console: ${m.text()}`); });
      page.on('response', (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} ${r.url()}`); });
      const res = await page.goto(`${gw.origin}/demo/`);
      assert.equal(res.status(), 200);
      await page.fill('#login-user', 'carol');
      await page.click('#login-submit');
      await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
      assert.equal(await page.textContent('#me-name'), 'carol');

      const kim = track(webClient(gw.url, 'kim'));
      await kim.connect();
      const evil = '<img src=x onerror="window.__pwned=1"> & <b>not bold</b>';
      await kim.send('carol', 'Hello Carol, are you there?');
      await kim.send('carol', evil);
      const item = page.locator(`#chat-list li[data-conv="${jidOf('kim')}"]`);
      await item.locator('.unread').waitFor({ timeout: 10000 });
      // The bubble shows 1 when the first message arrives, then 2.
      await untilAsync('the unread bubble says 2', 10000, async () => (await item.locator('.unread').textContent()).trim() === '2');
      assert.equal(await page.title(), '(2) imgw demo');

      await item.locator('button').click();
      await page.waitForSelector('#messages .msg.theirs .bubble');
      assert.equal(await item.locator('.unread').count(), 0, 'bubble cleared when opened');
      const bodies = await page.locator('#messages .msg.theirs .bubble').allTextContents();
      assert.deepEqual(bodies, ['Hello Carol, are you there?', evil], 'message text shown verbatim');
      assert.equal(await page.evaluate(() => window.__pwned), undefined, 'no markup from messages runs');
      assert.equal(await page.locator('#messages img, #messages b').count(), 0);

      await page.fill('#composer-text', 'Yes! Replying from the demo page.');
      await page.press('#composer-text', 'Enter');
      const reply = await kim.next((m) => m.body === 'Yes! Replying from the demo page.');
      assert.equal(reply.from, jidOf('carol'));
      await page.waitForSelector('#messages .msg.own:not(.pending)', { timeout: 10000 });
      assert.equal(await page.locator('#messages .msg.own .bubble').textContent(), 'Yes! Replying from the demo page.');

      // A message into the open conversation is not unread; another one is.
      await kim.send('carol', 'Great, see you.');
      await page.locator('#messages .msg.theirs .bubble', { hasText: 'Great, see you.' }).waitFor({ timeout: 10000 });
      assert.equal(await item.locator('.unread').count(), 0);
      const lee = track(webClient(gw.url, 'lee'));
      await lee.connect();
      await lee.send('carol', 'Psst, carol');
      await page.locator(`#chat-list li[data-conv="${jidOf('lee')}"] .unread`).waitFor({ timeout: 10000 });
      // The page shows a lost gateway and recovers by itself once it is back.
      outage = true;
      await gw.stop('SIGKILL');
      await page.waitForSelector('#state:is([data-state="reconnecting"], [data-state="connecting"])', { timeout: 10000 });
      assert.match(await page.textContent('#state-text'), /Reconnecting|Connecting/);
      await gw.start();
      await page.waitForSelector('#state[data-state="connected"]', { timeout: 15000 });
      await nextOpenIfNeeded(kim);
      await kim.send('carol', 'Still there after the restart?');
      await page.locator('#messages .msg.theirs .bubble', { hasText: 'Still there after the restart?' }).waitFor({ timeout: 10000 });
      // Start a conversation from the field, by user id.
      await page.fill('#new-chat-peer', 'mia');
      await page.press('#new-chat-peer', 'Enter');
      await page.waitForSelector(`#chat-list li.active[data-conv="${jidOf('mia')}"]`);
      await item.locator('button').click();
      await page.waitForSelector('#messages .msg.own');
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });

  // Last on purpose: an early gateway build miscounted refused upgrades and then refused
  // every later connection ("max_sessions reached").
  test('a foreign origin is refused with HTTP 403 and the gateway keeps accepting others', async () => {
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(gw.url, 'imgw.v1', { origin: 'http://evil.test' });
      ws.on('unexpected-response', (_req, res) => { resolve(res.statusCode); ws.terminate(); });
      ws.on('open', () => { resolve('open'); ws.close(); });
      ws.on('error', (e) => resolve(`error: ${e.message}`));
    });
    const after = webClient(gw.url, 'nora', { connectTimeoutMs: 3000 });
    const welcomed = await Promise.race([after.connect().then(() => true), sleep(3000).then(() => false)]);
    after.close();
    assert.equal(status, 403);
    assert.ok(welcomed, 'a normal client is still welcomed after the refusal');
  });
});
