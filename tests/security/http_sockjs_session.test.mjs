// Issue 9, item 3: a SockJS session id was the only credential. With alice's session id,
// a client at another address, with another Origin, another prefix and server id, sent
// xhr_send (delivered as alice) and read her frames over xhr; one-character ids were
// accepted. A session now answers only its creator's client address, and its Origin when
// both requests carry one; session ids are at least 8 characters (sockjs-client's).
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';

const DOMAIN = 'shop.test';

/** POST from a chosen local address (127.0.0.2 is another client). */
function post(url, body, { localAddress, origin } = {}) {
  return new Promise((resolve, reject) => {
    const headers = { 'Content-Length': Buffer.byteLength(body), 'Content-Type': 'text/plain' };
    if (origin) headers.Origin = origin;
    const req = http.request(url, { method: 'POST', headers, localAddress, timeout: 10000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => resolve({ status: res.statusCode, text }));
    });
    req.on('timeout', () => req.destroy(new Error(`POST ${url} timed out`)));
    req.on('error', reject);
    req.end(body);
  });
}

describe('SockJS: a session id is not a credential', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, origin;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { allowed_origins: `http://127.0.0.1:0, http://evil.example, http://other.example` } });
    origin = 'http://127.0.0.1:0';
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
  });

  it('another address or Origin cannot send or read with alice\'s session id', async () => {
    const sid = `a${Date.now()}bcdefgh`;
    const base = `${gw.httpUrl}/sockjs/getUserMsg/000/${sid}`;
    assert.equal((await post(`${base}/xhr`, '', { origin })).text, 'o\n');
    assert.equal((await post(`${base}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'hello', user: 'alice' })]), { origin })).status, 204);
    const welcome = await post(`${base}/xhr`, '', { origin });
    assert.match(welcome.text, /welcome/);

    // Another client address, another prefix and server id, an allowed Origin.
    const other = `${gw.httpUrl}/sockjs/chat/999/${sid}`;
    const send = await post(`${other}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'send', to: 'bob', body: 'as alice', cid: 'x1' })]), { localAddress: '127.0.0.2', origin: 'http://evil.example' });
    assert.equal(send.status, 404, `xhr_send from another address: ${send.status} ${send.text}`);
    const read = await post(`${other}/xhr`, '', { localAddress: '127.0.0.2' });
    assert.equal(read.status, 404, `xhr from another address: ${read.status} ${read.text}`);
    // The same address with another Origin.
    const send2 = await post(`${base}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'ping' })]), { origin: 'http://other.example' });
    assert.equal(send2.status, 404, `xhr_send with another Origin: ${send2.status}`);
    // The owner still works.
    assert.equal((await post(`${base}/xhr_send`, JSON.stringify([JSON.stringify({ op: 'ping', t: 1 })]), { origin })).status, 204);
    assert.match((await post(`${base}/xhr`, '', { origin })).text, /pong/);
  });

  it('session ids shorter than 8 characters are refused', async () => {
    for (const sid of ['a', '1234567']) {
      const r = await post(`${gw.httpUrl}/sockjs/getUserMsg/000/${sid}/xhr`, '', { origin });
      assert.equal(r.status, 404, `session id '${sid}'`);
    }
    const ok = await post(`${gw.httpUrl}/sockjs/getUserMsg/000/12345678/xhr`, '', { origin });
    assert.equal(ok.text, 'o\n');
  });
});
