// sockjs-client in headless Chromium against the gateway, for the transports only a
// browser runs: htmlfile (same origin: the page streams <script>p("...")</script> into a
// hidden iframe) and iframe-htmlfile (cross origin: iframe.html from the gateway loads
// /sockjs/sockjs.min.js, then htmlfile inside it). Both failed before (issue 11, item 7):
// the htmlfile prelude defining p() was dropped, and sockjs.min.js was not served.
//
// Needs build/gateway/imgw, prosody and /usr/bin/chromium (IMGW_CHROMIUM overrides).
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { freePort } from '../lib/ports.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CHROMIUM = process.env.IMGW_CHROMIUM || '/usr/bin/chromium';
const DOMAIN = 'shop.test';
const SOCKJS_JS = path.join(REPO, 'node_modules', 'sockjs-client', 'dist', 'sockjs.min.js');

// The page: connect with one forced transport, log in (dev mode), ping, report.
const PAGE = (sockjsSrc, url, transport) => `<!doctype html><meta charset="utf-8">
<script src="${sockjsSrc}"></script>
<script>
  window.result = new Promise((resolve) => {
    const log = [];
    const s = new SockJS(${JSON.stringify(url)}, null, { transports: [${JSON.stringify(transport)}], timeout: 8000 });
    s.onopen = () => { log.push('open:' + s.transport); s.send(JSON.stringify({ op: 'hello', user: 'brw' + Date.now() })); };
    s.onmessage = (e) => {
      const f = JSON.parse(e.data);
      log.push(f.op);
      if (f.op === 'welcome') s.send(JSON.stringify({ op: 'ping', t: 'caf\\u00e9 \\u2028 <script>' }));
      if (f.op === 'pong') { log.push('t:' + f.t); s.close(); }
    };
    s.onclose = (e) => resolve({ log, code: e.code, reason: e.reason });
  });
</script>`;

const skip = !gatewayBuilt() ? 'build/gateway/imgw is not built'
  : !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

describe('sockjs-client in Chromium: htmlfile and iframe-htmlfile', { skip }, () => {
  let prosody, gw, browser, webRoot, other, otherPort;

  before(async () => {
    // Same-origin page: a web_root of our own, served by the gateway under /demo/.
    webRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-sjsweb-'));
    fs.mkdirSync(path.join(webRoot, 'demo'));
    otherPort = await freePort();
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { web_root: webRoot, allowed_origins: `http://127.0.0.1:${otherPort}` } });
    fs.writeFileSync(path.join(webRoot, 'demo', 'htmlfile.html'),
      PAGE('sockjs.min.js', `${gw.httpUrl}/sockjs/getUserMsg`, 'htmlfile'));
    fs.copyFileSync(SOCKJS_JS, path.join(webRoot, 'demo', 'sockjs.min.js'));
    // Cross-origin page: another port is another origin.
    other = http.createServer((req, res) => {
      if (req.url === '/sockjs.min.js') {
        res.writeHead(200, { 'content-type': 'application/javascript' });
        res.end(fs.readFileSync(SOCKJS_JS));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(PAGE('/sockjs.min.js', `${gw.httpUrl}/sockjs/chat`, 'iframe-htmlfile'));
    });
    await new Promise((r) => other.listen(otherPort, '127.0.0.1', r));
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await new Promise((r) => (other ? other.close(r) : r()));
    await gw?.cleanup();
    await prosody?.stop();
    if (webRoot) fs.rmSync(webRoot, { recursive: true, force: true });
  });

  async function run(url) {
    const ctx = await browser.newContext();
    try {
      const page = await ctx.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // Failed loads are reported by URL below (the console line has none).
      page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) errors.push(m.text()); });
      page.on('response', (res) => { if (res.status() >= 400 && !/favicon\.ico$/.test(res.url())) errors.push(`HTTP ${res.status()} ${res.url()}`); });
      await page.goto(url);
      const r = await page.evaluate(() => Promise.race([window.result, new Promise((res) => setTimeout(() => res({ log: ['timeout'] }), 15000))]));
      return { ...r, errors };
    } finally {
      await ctx.close();
    }
  }

  it('htmlfile (same origin): open, welcome, pong with the exact text', async () => {
    const r = await run(`${gw.httpUrl}/demo/htmlfile.html`);
    assert.deepEqual(r.log, ['open:htmlfile', 'welcome', 'pong', 't:caf\u00e9 \u2028 <script>'], JSON.stringify(r));
    assert.deepEqual(r.errors, []);
  });

  it('iframe-htmlfile (cross origin): iframe.html loads sockjs.min.js from the gateway', async () => {
    const r = await run(`http://127.0.0.1:${otherPort}/`);
    assert.deepEqual(r.log, ['open:iframe-htmlfile', 'welcome', 'pong', 't:caf\u00e9 \u2028 <script>'], JSON.stringify(r));
    assert.deepEqual(r.errors, []);
  });
});
