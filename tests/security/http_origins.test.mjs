// Issue 9, item 4: origins did not protect the HTTP transports. From a page whose origin
// is not in allowed_origins, JSONP receive + send ran a full session, a no-cors xhr_send
// was executed, iframe.html could be framed by the foreign page, /info said "*:*", and a
// 600-byte Origin was taken for no Origin at all.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { rawRequest } from '../lib/rawhttp.mjs';

const DOMAIN = 'shop.test';
const EVIL = 'https://evil.example';

describe('Origins protect the HTTP transports', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, good;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { allowed_origins: 'https://shop.example' } });
    good = 'https://shop.example';
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
  });

  const get = (path, headers = {}) => fetch(`${gw.httpUrl}${path}`, { headers, signal: AbortSignal.timeout(10000) });
  const post = (path, body, headers = {}) => fetch(`${gw.httpUrl}${path}`, { method: 'POST', body, headers, signal: AbortSignal.timeout(10000) });

  it('SockJS receivers and sends refuse a foreign Origin, and JSONP a foreign Referer', async () => {
    const base = '/sockjs/getUserMsg/000/abcdefgh1';
    assert.equal((await post(`${base}/xhr`, '', { Origin: EVIL })).status, 403);
    assert.equal((await post(`${base}/xhr_streaming`, '', { Origin: EVIL })).status, 403);
    assert.equal((await get(`${base}/eventsource`, { Origin: EVIL })).status, 403);
    assert.equal((await get(`${base}/jsonp?c=cb`, { Referer: `${EVIL}/page.html` })).status, 403);
    assert.equal((await get(`${base}/htmlfile?c=cb`, { Referer: `${EVIL}/page.html` })).status, 403);
    // A session opened by the allowed page: a foreign page cannot send into it (no-cors POST).
    const ok = await post(`${base}/xhr`, '', { Origin: good });
    assert.equal(await ok.text(), 'o\n');
    const hello = JSON.stringify([JSON.stringify({ op: 'hello', user: 'alice' })]);
    assert.equal((await post(`${base}/xhr_send`, hello, { Origin: EVIL, 'Content-Type': 'text/plain' })).status, 403);
    assert.equal((await post(`${base}/jsonp_send`, `d=${encodeURIComponent(hello)}`, { Referer: `${EVIL}/x`, 'Content-Type': 'application/x-www-form-urlencoded' })).status, 403);
    assert.equal((await post(`${base}/xhr_send`, hello, { Origin: good })).status, 204);
  });

  it('the JSON/JSONP API refuses a foreign Origin or (JSONP) Referer', async () => {
    const r1 = await get('/api/login?user=bob', { Origin: EVIL });
    assert.equal(r1.status, 403);
    assert.equal((await r1.json()).error.code, 'bad_origin');
    const r2 = await get('/api/login?user=bob&callback=cb', { Referer: `${EVIL}/p` });
    assert.match(await r2.text(), /^\/\*\*\/cb\(.*bad_origin/);
    assert.equal((await get('/api/login?user=bob', { Origin: good })).status, 200);
    // A long page URL in the Referer is fine: only its origin is judged.
    const r3 = await get('/api/login?user=bob3&callback=cb', { Referer: `${good}/page?${'x'.repeat(3000)}` });
    assert.match(await r3.text(), /^\/\*\*\/cb\(\{"token"/);
  });

  it('iframe.html may be framed only by allowed origins; /info tells the truth', async () => {
    const fr = await get('/sockjs/chat/iframe.html');
    assert.equal(fr.status, 200);
    assert.equal(fr.headers.get('content-security-policy'), "frame-ancestors 'self' https://shop.example");
    const info = await (await get('/sockjs/chat/info')).json();
    assert.deepEqual(info.origins, ['shop.example']);
  });

  it('an over-long Origin is refused, never taken for "no Origin"', async () => {
    const long = `https://${'a'.repeat(600)}.example`;
    const r = await rawRequest(gw.port, `POST /sockjs/chat/000/abcdefgh2/xhr HTTP/1.1\r\nHost: x\r\nOrigin: ${long}\r\nContent-Length: 0\r\n\r\n`);
    assert.equal(r.status, 403);
    const a = await rawRequest(gw.port, `GET /api/login?user=carol HTTP/1.1\r\nHost: x\r\nOrigin: ${long}\r\n\r\n`);
    assert.equal(a.status, 403);
    await assert.rejects(openWs(gw.wsUrl, { origin: long }), (e) => e.status === 403);
  });
});
