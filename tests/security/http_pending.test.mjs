// Issue 9, item 9: unauthenticated state was unbounded: 40,000 failed /api/login calls kept
// ~280 B each for 60 s, 15,000 SockJS sessions without hello lived ~15 s, and none counted
// against max_sessions. Sessions that have not authenticated yet are now capped, per
// client address and in all, across WebSocket, SockJS and the JSON/JSONP API.
import { after, before, describe, it } from '../lib/test.mjs';
import { until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';

const DOMAIN = 'shop.test';

function post(url, { localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'Content-Length': 0 }, localAddress, timeout: 10000 }, (res) => {
      let text = '';
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

describe('Unauthenticated sessions are capped', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw;
  const open = [];

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { max_pending_per_addr: 4, max_pending_sessions: 6, auth_timeout_ms: 30000 } });
  });

  after(async () => {
    for (const c of open) c.ws.terminate();
    await gw?.cleanup();
    await prosody?.stop();
  });

  it('failed API logins hold nothing', async () => {
    // Each failed login is answered and forgotten: many in a row never hit the cap.
    const t0 = Date.now();
    for (let i = 0; i < 30; i++) {
      const r = await fetch(`${gw.httpUrl}/api/login?ticket=bad${i}`, { headers: {}, signal: AbortSignal.timeout(10000) });
      assert.ok([401, 429].includes(r.status));
      assert.notEqual(r.status, 429, `login ${i} refused as pending after ${Date.now() - t0} ms`);
    }
    await until('no failed login is kept', 5000, async () => !/too many pending/.test(gw.logText()), gw.logText);
  });

  it('per address: WebSocket and SockJS sessions without hello count together', async () => {
    for (let i = 0; i < 3; i++) open.push(await openWs(gw.wsUrl));
    const sj = await post(`${gw.httpUrl}/sockjs/getUserMsg/000/pendingA1/xhr`);
    assert.equal(sj.text, 'o\n'); // the 4th place
    await assert.rejects(openWs(gw.wsUrl), (e) => e.status === 503);
    const sj2 = await post(`${gw.httpUrl}/sockjs/getUserMsg/000/pendingA2/xhr`);
    assert.equal(sj2.status, 503);
    // Another address still has room (the global cap is 6).
    assert.equal((await post(`${gw.httpUrl}/sockjs/getUserMsg/000/pendingB1/xhr`, { localAddress: '127.0.0.2' })).text, 'o\n');
    assert.equal((await post(`${gw.httpUrl}/sockjs/getUserMsg/000/pendingB2/xhr`, { localAddress: '127.0.0.2' })).text, 'o\n');
    // Global cap reached: a third address is refused too.
    assert.equal((await post(`${gw.httpUrl}/sockjs/getUserMsg/000/pendingC1/xhr`, { localAddress: '127.0.0.3' })).status, 503);
  });

  it('a session that authenticates gives its place back', async () => {
    await open[0].hello('pend1');
    const ws = await openWs(gw.wsUrl);
    open.push(ws);
    await ws.hello('pend2');
    assert.equal((await gw.health()).status !== undefined, true);
  });

});
