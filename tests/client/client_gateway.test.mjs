// The browser client against the real gateway and a real Prosody: two Node clients chat
// both ways, the outbox survives dropped connections and a gateway restart, and headless
// Chromium drives the demo page.
//
//   node --test tests/client/client_gateway.test.mjs
//
// Needs build/gateway/imgw (skipped with a message when it is not built), prosody and
// /usr/bin/chromium. IMGW_KEEP_TMP=1 keeps the temp dirs (gateway and Prosody logs).
// The demo screenshot goes to tests/artifacts/demo.png.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

import { ImgwClient } from '../../clients/web/imgw.js';
import { freePort, waitForPort } from '../lib/ports.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY = process.env.IMGW_GATEWAY_BIN || path.join(REPO, 'build', 'gateway', 'imgw');
const CHROMIUM = process.env.IMGW_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');
const DOMAIN = 'shop.test';
const GW_DOMAIN = 'gw.shop.test';
const SECRET = 'client-test-secret';

const skip = fs.existsSync(GATEWAY)
  ? false
  : `gateway binary not built yet: ${GATEWAY} (build the C gateway first)`;
if (skip) console.log(`# SKIP client_gateway.test.mjs: ${skip}`);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const jidOf = (user) => `${user}@${GW_DOMAIN}`;

// ---- the gateway process ----

/**
 * Starts build/gateway/imgw with a config file in a temp dir; restartable on the same
 * port. Its stdout and stderr go to DIR/gateway.log.
 */
async function startGateway({ componentPort }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-client-gw-'));
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const cfg = path.join(dir, 'imgw.conf');
  fs.writeFileSync(cfg, [
    '# written by tests/client/client_gateway.test.mjs',
    // Component mode: web users are USER@gw.shop.test, no companion module needed.
    'mode = component',
    'xmpp_host = 127.0.0.1',
    `xmpp_port = ${componentPort}`,
    `component_domain = ${GW_DOMAIN}`,
    `component_secret = ${SECRET}`,
    `xmpp_domain = ${DOMAIN}`,
    'listen_host = 127.0.0.1',
    `listen_port = ${port}`,
    'dev_mode = yes',
    `allowed_origins = ${origin}`,
    'allow_no_origin = yes',
    `web_root = ${path.join(REPO, 'clients', 'web')}`,
    'log_level = info',
    '',
  ].join('\n'));
  const logPath = path.join(dir, 'gateway.log');
  let child = null;
  let exitInfo = null;
  let exited = Promise.resolve();

  const logText = () => {
    try { return fs.readFileSync(logPath, 'utf8'); } catch { return ''; }
  };

  async function start() {
    exitInfo = null;
    const fd = fs.openSync(logPath, 'a');
    try {
      child = spawn(GATEWAY, ['--config', cfg], { stdio: ['ignore', fd, fd], cwd: dir });
    } finally {
      fs.closeSync(fd);
    }
    const c = child;
    exited = new Promise((resolve) => c.on('exit', (code, sig) => {
      exitInfo = sig ? `signal ${sig}` : `exit code ${code}`;
      if (child === c) child = null;
      resolve();
    }));
    try {
      await waitForPort(port, { deadline: Date.now() + 15000, abort: () => (exitInfo ? `gateway exited (${exitInfo})` : null) });
    } catch (err) {
      throw new Error(`${err.message}\n--- ${logPath} ---\n${logText().split('\n').slice(-40).join('\n')}`);
    }
  }

  async function stop(signal = 'SIGTERM') {
    const c = child;
    if (!c) return;
    c.kill(signal);
    const t = setTimeout(() => c.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }

  await start();
  return {
    port, origin, dir, logText, start, stop,
    url: `ws://127.0.0.1:${port}/ws`,
    exitInfo: () => exitInfo,
    async cleanup() {
      await stop();
      if (!process.env.IMGW_KEEP_TMP) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

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
function webClient(url, user, extra = {}) {
  const c = new ImgwClient({
    url, user, WebSocket, backoff: { minMs: 50, maxMs: 400 }, pingIntervalMs: 0, ...extra,
  });
  c.seen = [];
  c.waiters = [];
  c.on('message', (m) => {
    c.seen.push(m);
    for (const w of [...c.waiters]) {
      if (w.pred(m)) {
        c.waiters.splice(c.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  /** First message (already seen or future) matching pred. */
  c.next = (pred, ms = 10000) => {
    const hit = c.seen.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      c.waiters.push(w);
      setTimeout(() => {
        const i = c.waiters.indexOf(w);
        if (i < 0) return;
        c.waiters.splice(i, 1);
        reject(new Error(`${user}: no matching message in ${ms} ms; seen: ${JSON.stringify(c.seen.map((m) => [m.from, m.body]))}`));
      }, ms);
    });
  };
  c.bodies = (body) => c.seen.filter((m) => m.body === body);
  return c;
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
    gw = await startGateway({ componentPort: prosody.componentPort });
  });

  after(async () => {
    for (const c of clients) c.close();
    if (gw && process.env.IMGW_PRINT_LOGS) console.log(gw.logText());
    await gw?.cleanup();
    await prosody?.cleanup();
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

  // Known gap, gateway 0.1.0: router.c handle_send() gives every send a new id and does not
  // remember cids, so the retry is delivered a second time (with a new id).
  test('a send whose ack was lost is re-sent with the same cid and delivered once', {
    todo: 'the gateway does not de-duplicate a retried cid yet',
  }, async () => {
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
      page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
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
      assert.equal((await item.locator('.unread').textContent()).trim(), '2');
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

      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'demo.png') });
      assert.deepEqual(problems, []);
    } finally {
      await browser.close();
    }
  });

  // Last on purpose: an early gateway build miscounted refused upgrades and then refused
  // every later connection ("max_sessions reached").
  test('a foreign origin is refused with HTTP 403 and the gateway keeps accepting others', {
    todo: 'gateway 0.1.0 hangs up (no HTTP response) instead of answering 403',
  }, async () => {
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
