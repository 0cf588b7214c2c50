// Issue 9 item 10 (part): web users send only to allowed domains, never to an IP literal,
// and the demo page shows as pictures only the gateway's own /files/ URLs (or origins the
// operator lists in the page), never an address a message chooses.
//
// As found: a web user could send to any domain, including bob@127.0.0.1, and the demo
// page loaded any https://host/files/<hex>.png as an image. Real Prosody, the gateway,
// WebSocket clients, and the demo page in headless Chromium.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const CHROMIUM = process.env.IMGW_CHROMIUM || '/usr/bin/chromium';
const HEX = 'ab'.repeat(16);

async function sendOutcome(ws, to, cid) {
  ws.send({ op: 'send', to, body: 'hi', cid });
  return ws.next((f) => (f.op === 'ack' || f.op === 'error') && f.cid === cid);
}

describe('allowed_domains', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], users: [['app1', 'pw']], logLevel: 'info' });
    gw = await startImgw({ prosody });
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('by default accepts the XMPP domain and the component domain only', async () => {
    const ws = await openWs(gw.wsUrl);
    await ws.hello('alice');
    assert.equal((await sendOutcome(ws, `app1@${DOMAIN}`, 'a1')).op, 'ack');
    assert.equal((await sendOutcome(ws, 'bob', 'a2')).op, 'ack', 'a bare user id is on the component domain');
    for (const [to, cid] of [['bob@127.0.0.1', 'b1'], ['bob@10.0.0.1', 'b2'], ['bob@2130706433', 'b3'],
      ['bob@evil.example', 'b4'], [`bob@${DOMAIN}.evil.example`, 'b5'], ['bob@test', 'b6']]) {
      const f = await sendOutcome(ws, to, cid);
      assert.equal(f.op, 'error', `${to}: ${JSON.stringify(f)}`);
      assert.equal(f.code, 'domain_not_allowed', to);
    }
    await ws.close();
  });

  it('takes an explicit list, and refuses to start with an IP literal in it', async () => {
    // A second gateway on the same component domain gets 'conflict' from Prosody: its link
    // stays down, and sends are acked as queued, which is all this needs.
    const other = await startImgw({ prosody, waitLinkUp: false, config: { allowed_domains: `"${DOMAIN}, partner.example"` } });
    try {
      const ws = await openWs(other.wsUrl);
      await ws.hello('alice');
      assert.equal((await sendOutcome(ws, 'bob@partner.example', 'p1')).op, 'ack');
      assert.equal((await sendOutcome(ws, 'bob@PARTNER.example', 'p2')).op, 'ack');
      assert.equal((await sendOutcome(ws, `bob@${GW}`, 'p3')).code, 'domain_not_allowed', 'not in the list');
      assert.equal((await sendOutcome(ws, 'bob@127.0.0.1', 'p4')).code, 'domain_not_allowed');
      await ws.close();
    } finally {
      await other.cleanup();
    }
    await assert.rejects(startImgw({ prosody, waitLinkUp: false, config: { allowed_domains: `"${DOMAIN} 127.0.0.1"` } }),
      /allowed_domains.*127\.0\.0\.1.*not a domain name/s);
  });
});

const noBrowser = !gatewayBuilt() ? 'build/gateway/imgw is not built' : !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM}` : false;

describe('demo page pictures', { skip: noBrowser }, () => {
  let prosody, gw, browser;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody });
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
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  /** The demo signed in as user; imageOrigins, when given, is written into its meta tag. */
  async function demo(user, imageOrigins) {
    const ctx = await browser.newContext();
    const requested = [];
    // Nothing may leave for another host: record such requests and answer them locally.
    await ctx.route((url) => !url.href.startsWith(gw.httpUrl) && !url.href.startsWith(gw.wsUrl), (route) => {
      requested.push(route.request().url());
      return route.fulfill({ status: 200, contentType: 'image/png', body: Buffer.alloc(0) });
    });
    if (imageOrigins) {
      await ctx.route(`${gw.httpUrl}/demo/`, async (route) => {
        const res = await route.fetch();
        const html = (await res.text()).replace('name="imgw-image-origins" content=""', `name="imgw-image-origins" content="${imageOrigins}"`);
        return route.fulfill({ response: res, body: html });
      });
    }
    const page = await ctx.newPage();
    assert.equal((await page.goto(`${gw.httpUrl}/demo/`)).status(), 200);
    await page.fill('#login-user', user);
    await page.click('#login-submit');
    await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
    return { ctx, page, requested };
  }

  async function showPictures(viewer, sender, bodies) {
    const ws = await openWs(gw.wsUrl);
    await ws.hello(sender);
    for (const [i, body] of bodies.entries()) {
      ws.send({ op: 'send', to: viewer, body, cid: `pic${i}`, kind: 'image' });
      assert.equal((await ws.next((f) => f.cid === `pic${i}`)).op, 'ack');
    }
    await ws.close();
  }

  async function openConversation(page, peerJid, count) {
    await page.locator(`#chat-list li[data-conv="${peerJid}"] button`).click();
    await page.waitForFunction((n) => document.querySelectorAll('#messages .msg.theirs').length >= n, count, { timeout: 10000 });
    return page.evaluate(() => [...document.querySelectorAll('#messages .msg.theirs .bubble')].map((b) => ({
      img: b.querySelector('img')?.getAttribute('src') ?? null,
      text: b.textContent,
    })));
  }

  it('shows the gateway\'s own /files/ pictures and nothing from elsewhere', async () => {
    const own = `${gw.httpUrl}/files/${HEX}.png`;
    const bodies = [
      own,
      `https://evil.example/files/${HEX}.png`,
      `http://127.0.0.1:1/files/${HEX}.png`,
      `${gw.httpUrl}/files/${HEX}.png?track=1`,
      `http://user:pw@127.0.0.1:${gw.port}/files/${HEX}.png`,
    ];
    const { ctx, page, requested } = await demo('viewer1');
    try {
      await showPictures('viewer1', 'sender1', bodies);
      const shown = await openConversation(page, `sender1@${GW}`, bodies.length);
      assert.equal(shown.length, bodies.length);
      assert.equal(shown[0].img, own, 'the gateway\'s own picture is a picture');
      for (let i = 1; i < bodies.length; i++) {
        assert.equal(shown[i].img, null, `${bodies[i]} must not be loaded`);
        assert.equal(shown[i].text, bodies[i], 'shown as text');
      }
      assert.deepEqual(requested, [], 'no request left for another host');
    } finally {
      await ctx.close();
    }
  });

  it('shows pictures from an origin the operator lists in the page', async () => {
    const cdn = `https://cdn.shop.example/files/${HEX}.png`;
    const { ctx, page, requested } = await demo('viewer2', 'https://cdn.shop.example');
    try {
      await showPictures('viewer2', 'sender2', [cdn, `https://evil.example/files/${HEX}.png`]);
      const shown = await openConversation(page, `sender2@${GW}`, 2);
      assert.equal(shown[0].img, cdn);
      assert.equal(shown[1].img, null);
      await page.waitForFunction(() => document.querySelector('#messages .msg.theirs img')?.complete, null, { timeout: 10000 });
      assert.deepEqual(requested, [cdn]);
    } finally {
      await ctx.close();
    }
  });
});
