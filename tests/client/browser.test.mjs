// The demo page in headless Chromium against the real gateway (component mode) with
// PostgreSQL, Redis and an upload directory, and a real Prosody:
//   (a) two pages and an XMPP user of the server chat with each other;
//   (b) pages without WebSocket (removed by an init script, or ?transport=jsonp) chat
//       through the JSONP long-poll fallback;
//   (c) unread bubbles from the server, live in two tabs of one user; opening the chat
//       in one tab clears the bubble in the other;
//   (d) scroll-back loads older pages of history;
//   (e) a picture sent from one page shows in the other;
//   (f) a screenshot of the demo is kept as tests/artifacts/demo.png.
//
//   node --test tests/client/browser.test.mjs
//
// Needs build/gateway/imgw (skipped otherwise), prosody, PostgreSQL 15, redis-server and
// /usr/bin/chromium (IMGW_CHROMIUM overrides). Every wait is bounded; nothing sleeps to
// synchronise.

import { describe, test, before, after } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

import { GATEWAY_BIN, gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { webClient } from './webclient.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');
const CHROMIUM = process.env.IMGW_CHROMIUM || '/usr/bin/chromium';
const DOMAIN = 'shop.test';
const GW_DOMAIN = `gw.${DOMAIN}`;
const SECRET = 'browser-test-secret';
const WAIT = 10000; // ms for anything the page should show

const skip = !gatewayBuilt()
  ? `gateway binary not built yet: ${GATEWAY_BIN}`
  : !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;
if (skip) console.log(`# SKIP browser.test.mjs: ${skip}`);

const jidOf = (user) => `${user}@${GW_DOMAIN}`;

// ---- a small PNG, made here (the gateway detects pictures from their bytes) ----

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** A w×h RGB PNG: a diagonal gradient with a light disc, so it is visibly a picture. */
function makePng(w, h) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    raw[y * (w * 3 + 1)] = 0;
    for (let x = 0; x < w; x++) {
      const o = y * (w * 3 + 1) + 1 + x * 3;
      const t = (x + y) / (w + h);
      const inDisc = (x - w * 0.7) ** 2 + (y - h * 0.35) ** 2 < (h * 0.18) ** 2;
      raw[o] = inDisc ? 255 : Math.round(40 + 60 * t);
      raw[o + 1] = inDisc ? 236 : Math.round(90 + 110 * t);
      raw[o + 2] = inDisc ? 170 : Math.round(200 - 40 * t);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0)),
  ]);
}

// ---- Node clients ----


describe('demo page in Chromium', { skip }, () => {
  let prosody, pg, redis, gw, xmpp, browser, uploadDir;
  const clients = [];
  const contexts = [];
  const problems = [];
  const track = (c) => { clients.push(c); return c; };

  before(async () => {
    const { startProsody } = await import('../lib/prosody.mjs');
    const { startPostgres } = await import('../lib/postgres.mjs');
    const { startRedis } = await import('../lib/redis.mjs');
    xmpp = await import('../lib/xmpp.mjs');
    prosody = await startProsody({
      domain: DOMAIN, components: [{ domain: GW_DOMAIN, secret: SECRET }],
      users: [['shopapp', 'pw']], logLevel: 'info',
    });
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    uploadDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-browser-up-'));
    gw = await startImgw({
      prosody, secret: SECRET,
      config: {
        pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port, upload_dir: uploadDir,
      },
    });
    const { chromium } = await import('playwright-core');
    // launch() runs Chromium on a fresh temporary profile (user-data-dir) of its own.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    for (const c of clients) c.close();
    for (const ctx of contexts) await ctx.close().catch(() => {});
    await browser?.close();
    if (gw && process.env.IMGW_PRINT_LOGS) console.log(gw.logText());
    await gw?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
    await prosody?.cleanup();
    if (uploadDir) fs.rmSync(uploadDir, { recursive: true, force: true });
  });

  /** A fresh browser context (its own storage, like another browser). */
  async function newContext(init) {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 680 } });
    contexts.push(ctx);
    if (init) await ctx.addInitScript(init);
    return ctx;
  }

  /** Opens the demo in `ctx` and signs in as `user`. */
  async function signIn(ctx, user, query = '') {
    const page = await ctx.newPage();
    page.on('pageerror', (e) => problems.push(`${user}: pageerror: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`${user}: console: ${m.text()}`); });
    page.on('response', (r) => { if (r.status() >= 400) problems.push(`${user}: HTTP ${r.status()} ${r.url()}`); });
    const res = await page.goto(`${gw.httpUrl}/demo/${query}`);
    assert.equal(res.status(), 200);
    await page.fill('#login-user', user);
    await page.click('#login-submit');
    await page.waitForSelector('#state[data-state="connected"]', { timeout: WAIT });
    assert.equal(await page.textContent('#me-name'), user);
    return page;
  }

  const chatItem = (page, conv) => page.locator(`#chat-list li[data-conv="${conv}"]`);

  async function openChat(page, conv) {
    await chatItem(page, conv).locator('button').click();
    await page.waitForSelector(`#chat-list li.active[data-conv="${conv}"]`, { timeout: WAIT });
  }

  async function startChat(page, peer) {
    await page.fill('#new-chat-peer', peer);
    await page.press('#new-chat-peer', 'Enter');
    await page.waitForSelector(`#chat-list li.active[data-conv="${peer.includes('@') ? peer : jidOf(peer)}"]`, { timeout: WAIT });
  }

  async function type(page, text) {
    await page.fill('#composer-text', text);
    await page.press('#composer-text', 'Enter');
  }

  const bubble = (page, text) => page.locator('#messages .msg .bubble', { hasText: text });
  const badge = (page, conv) => chatItem(page, conv).locator('.unread');

  async function badgeText(page, conv, expected) {
    await page.waitForFunction(([c, e]) => {
      const b = document.querySelector(`#chat-list li[data-conv="${c}"] .unread`);
      return (b ? b.textContent.trim() : '') === e;
    }, [conv, expected], { timeout: WAIT });
  }

  test('(a) two pages and an XMPP user of the server chat with each other', async () => {
    const app = await xmpp.login({ port: prosody.c2sPort, domain: DOMAIN, username: 'shopapp', password: 'pw' });
    try {
      const alice = await signIn(await newContext(), 'alice');
      const bob = await signIn(await newContext(), 'bob');
      assert.equal(await alice.getAttribute('#transport', 'data-transport'), 'websocket');

      await startChat(alice, 'bob');
      await type(alice, 'Hi Bob, it is Alice.');
      await alice.waitForSelector('#messages .msg.own:not(.pending)', { timeout: WAIT });
      await badgeText(bob, jidOf('alice'), '1');
      await openChat(bob, jidOf('alice'));
      await bubble(bob, 'Hi Bob, it is Alice.').waitFor({ timeout: WAIT });
      await type(bob, 'Hello Alice!');
      await bubble(alice, 'Hello Alice!').waitFor({ timeout: WAIT });
      assert.equal(await badge(alice, jidOf('bob')).count(), 0, 'open conversation: no bubble');

      // The shop's own XMPP account writes to a web user and gets the answer.
      await app.send(xmpp.xml('message', { to: jidOf('alice'), type: 'chat' },
        xmpp.xml('body', {}, 'Your order #1042 has shipped.')));
      const appConv = `shopapp@${DOMAIN}`;
      await badgeText(alice, appConv, '1');
      await openChat(alice, appConv);
      await bubble(alice, 'Your order #1042 has shipped.').waitFor({ timeout: WAIT });
      await type(alice, 'Thanks, shop!');
      const st = await xmpp.nextMessage(app, (m) => m.getChildText('body') === 'Thanks, shop!', WAIT);
      assert.equal(st.attrs.from.split('/')[0], jidOf('alice'));
      // And bob writes to the shop from his page.
      await startChat(bob, appConv);
      await type(bob, 'Do you ship to Norway?');
      await xmpp.nextMessage(app, (m) => m.getChildText('body') === 'Do you ship to Norway?', WAIT);
      assert.deepEqual(problems, []);
    } finally {
      await app.stop().catch(() => {});
    }
  });

  test('(b) without WebSocket the page chats through the JSONP long-poll fallback', async () => {
    // WebSocket removed before any script runs: the client falls back by itself.
    const noWs = await newContext(() => { window.WebSocket = undefined; });
    const apiCalls = [];
    const carl = await signIn(noWs, 'carl');
    carl.on('request', (r) => { if (r.url().includes('/api/')) apiCalls.push(r.url()); });
    assert.equal(await carl.getAttribute('#transport', 'data-transport'), 'jsonp');
    assert.equal(await carl.evaluate(() => typeof window.WebSocket), 'undefined');
    // Forced with ?transport=jsonp although WebSocket exists.
    const dora = await signIn(await newContext(), 'dora', '?transport=jsonp');
    assert.equal(await dora.getAttribute('#transport', 'data-transport'), 'jsonp');

    await startChat(carl, 'dora');
    await type(carl, 'Sent over long-poll <b>not bold</b>');
    await carl.waitForSelector('#messages .msg.own:not(.pending)', { timeout: WAIT });
    await badgeText(dora, jidOf('carl'), '1');
    await openChat(dora, jidOf('carl'));
    await bubble(dora, 'Sent over long-poll <b>not bold</b>').waitFor({ timeout: WAIT });
    assert.equal(await dora.locator('#messages b').count(), 0);
    await type(dora, 'Received over long-poll too');
    await bubble(carl, 'Received over long-poll too').waitFor({ timeout: WAIT });
    // A multi-line message over a GET (script JSONP): whole, not cut at the line break.
    await type(carl, 'First line, 50% off\nsecond line + more');
    await bubble(dora, 'second line + more').waitFor({ timeout: WAIT });
    assert.match(await bubble(dora, 'second line + more').innerText(), /First line, 50% off\s+second line \+ more/);
    // A Node client over WebSocket reaches the long-poll page as well.
    const ed = track(webClient(gw.wsUrl, 'eddie'));
    await ed.connect();
    await ed.send('carl', 'From a WebSocket user');
    await badgeText(carl, jidOf('eddie'), '1');
    // The calls were <script> JSONP (a callback parameter), not fetch.
    assert.ok(apiCalls.length > 0);
    assert.ok(apiCalls.every((u) => /[?&]callback=__imgwJsonp\.c\d+/.test(u)), apiCalls.join('\n'));
    assert.deepEqual(problems, []);
  });

  test('(c) unread bubbles in two tabs of one user; opening the chat in one clears the other', async () => {
    const ctx = await newContext();
    const tab1 = await signIn(ctx, 'erin');
    const tab2 = await signIn(ctx, 'erin');
    const fred = track(webClient(gw.wsUrl, 'fred'));
    await fred.connect();
    await fred.send('erin', 'First from Fred');
    await fred.send('erin', 'Second from Fred');
    const conv = jidOf('fred');
    await badgeText(tab1, conv, '2');
    await badgeText(tab2, conv, '2');
    assert.equal(await tab1.title(), '(2) imgw demo');
    // A tab opened now gets the count from the server's chat list.
    const tab3 = await signIn(ctx, 'erin');
    await badgeText(tab3, conv, '2');

    await openChat(tab1, conv);
    await bubble(tab1, 'Second from Fred').waitFor({ timeout: WAIT });
    await badgeText(tab1, conv, '');
    await badgeText(tab2, conv, '');
    await badgeText(tab3, conv, '');
    await tab2.waitForFunction(() => document.title === 'imgw demo', null, { timeout: WAIT });
    // A new message while tab1 shows the conversation: tab1 reads it, the others follow.
    await fred.send('erin', 'Third from Fred');
    await bubble(tab1, 'Third from Fred').waitFor({ timeout: WAIT });
    await tab2.locator(`#chat-list li[data-conv="${conv}"] .chat-preview`, { hasText: 'Third from Fred' }).waitFor({ timeout: WAIT });
    await badgeText(tab2, conv, '');
    const chats = await (async () => {
      const e = track(webClient(gw.wsUrl, 'erin'));
      await e.connect();
      return e.chats();
    })();
    assert.equal(chats.chats.find((c) => c.peer === conv).unread, 0, 'the server agrees');
    assert.deepEqual(problems, []);
  });

  test('(d) scroll-back loads older messages', async () => {
    const gus = track(webClient(gw.wsUrl, 'gus'));
    await gus.connect();
    for (let i = 1; i <= 45; i++) await gus.send('hana', `Message ${String(i).padStart(2, '0')}`);
    const hana = await signIn(await newContext(), 'hana', '?page=20');
    const conv = jidOf('gus');
    await badgeText(hana, conv, '45');
    await openChat(hana, conv);
    const count = () => hana.locator('#messages .msg').count();
    await hana.waitForFunction(() => document.querySelectorAll('#messages .msg').length === 20, null, { timeout: WAIT });
    assert.equal(await hana.locator('#messages .msg .bubble').first().textContent(), 'Message 26');
    assert.equal(await hana.locator('#messages .msg .bubble').last().textContent(), 'Message 45');
    await badgeText(hana, conv, '');

    for (const expected of [40, 45]) {
      await hana.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
      await hana.waitForFunction((n) => document.querySelectorAll('#messages .msg').length === n, expected, { timeout: WAIT });
    }
    const bodies = await hana.locator('#messages .msg .bubble').allTextContents();
    assert.deepEqual(bodies, Array.from({ length: 45 }, (_, i) => `Message ${String(i + 1).padStart(2, '0')}`));
    await hana.waitForSelector('#older', { state: 'hidden', timeout: WAIT });
    assert.equal(await count(), 45);
    // Where the reader was stays on screen: the old first message did not jump to the top.
    const top = await hana.locator('#messages').evaluate((el) => el.scrollTop);
    assert.ok(top > 0, `scroll position kept (${top})`);
    assert.deepEqual(problems, []);
  });

  test('(e) a picture sent from one page shows in the other; (f) screenshot', async () => {
    const ivan = await signIn(await newContext(), 'ivan');
    const png = makePng(240, 160);
    await startChat(ivan, 'jade');
    await type(ivan, 'Look at this sunset:');
    await ivan.setInputFiles('#file-input', { name: 'sunset.png', mimeType: 'image/png', buffer: png });
    const own = ivan.locator('#messages .msg.own:not(.pending) .bubble.picture img');
    await own.waitFor({ timeout: WAIT });
    const src = await own.getAttribute('src');
    assert.match(src, new RegExp(`^${gw.httpUrl}/files/[0-9a-f]{32}\\.png$`));
    // Jade signs in afterwards: the picture comes from history and is shown as a picture.
    const jade = await signIn(await newContext(), 'jade');
    await badgeText(jade, jidOf('ivan'), '2');
    assert.equal(await chatItem(jade, jidOf('ivan')).locator('.chat-preview').textContent(), '📷 Picture');
    await openChat(jade, jidOf('ivan'));
    const img = jade.locator('#messages .msg.theirs .bubble.picture img');
    await img.waitFor({ timeout: WAIT });
    assert.equal(await img.getAttribute('src'), src);
    await jade.waitForFunction(() => {
      const i = document.querySelector('#messages .msg.theirs .bubble.picture img');
      return i && i.complete && i.naturalWidth === 240;
    }, null, { timeout: WAIT });
    await type(jade, 'Gorgeous! Where was that?');
    await bubble(ivan, 'Gorgeous! Where was that?').waitFor({ timeout: WAIT });
    await type(ivan, 'Lofoten, last summer.');
    await bubble(jade, 'Lofoten, last summer.').waitFor({ timeout: WAIT });

    // (f) A few more conversations so the list looks like a real one, then the picture.
    for (const [who, text] of [['kira', 'Are we still on for Friday?'], ['leo', 'Sent you the invoice.']]) {
      const c = track(webClient(gw.wsUrl, who));
      await c.connect();
      await c.send('ivan', text);
      await chatItem(ivan, jidOf(who)).locator('.unread').waitFor({ timeout: WAIT });
    }
    await ivan.waitForFunction(() => {
      const i = document.querySelector('#messages .msg.own .bubble.picture img');
      return i && i.complete && i.naturalWidth === 240;
    }, null, { timeout: WAIT });
    await ivan.locator('#messages').evaluate((el) => { el.scrollTop = el.scrollHeight; });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    await ivan.screenshot({ path: path.join(ARTIFACTS, 'demo.png') });
    assert.ok(fs.statSync(path.join(ARTIFACTS, 'demo.png')).size > 10000);
    assert.deepEqual(problems, []);
  });

  test('(e) a picture arrives live in an open conversation, and as a preview in the list', async () => {
    const mona = await signIn(await newContext(), 'mona');
    const ned = await signIn(await newContext(), 'ned', '?transport=jsonp');
    await startChat(mona, 'ned');
    await startChat(ned, 'mona');
    await mona.setInputFiles('#file-input', { name: 'dot.png', mimeType: 'image/png', buffer: makePng(60, 40) });
    const img = ned.locator('#messages .msg.theirs .bubble.picture img');
    await img.waitFor({ timeout: WAIT });
    assert.equal(await img.getAttribute('src'),
      await mona.locator('#messages .msg.own:not(.pending) .bubble.picture img').getAttribute('src'));
    // Sent the other way, from the long-poll page, into a conversation that is not open.
    const olga = await signIn(await newContext(), 'olga');
    await startChat(ned, 'olga');
    await ned.setInputFiles('#file-input', { name: 'dot.png', mimeType: 'image/png', buffer: makePng(50, 50) });
    await badgeText(olga, jidOf('ned'), '1');
    assert.equal(await chatItem(olga, jidOf('ned')).locator('.chat-preview').textContent(), '📷 Picture');
    await openChat(olga, jidOf('ned'));
    await olga.locator('#messages .msg.theirs .bubble.picture img').waitFor({ timeout: WAIT });
    assert.deepEqual(problems, []);
  });
});
