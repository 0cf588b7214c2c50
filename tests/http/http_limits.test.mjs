// Issue 11, items 6 and 7 (HTTP side), each against a real gateway and Prosody:
//  - HTTP API errors go back at once to the request that caused them, naming its op
//    ("for"), instead of a 504 after 10 s while the error lands in the poll queue;
//  - each decoded SockJS message is bounded by max_frame_bytes, not the whole POST or
//    WebSocket message: sockjs-client batches queued sends and escapes non-ASCII, so an
//    8,000-byte emoji message or 8 quick 2,000-character ones must go through xhr_send,
//    the framed WebSocket and jsonp_send, and a message past the bound is never dropped
//    silently;
//  - a receiver whose browser went away is noticed while it waits, not at the next
//    heartbeat 25 s later.
import { after, before, describe, it } from '../lib/test.mjs';
import { until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { rawConnect } from '../lib/rawhttp.mjs';

const DOMAIN = 'shop.test';

/** JSON.stringify, then \\uXXXX for everything non-ASCII, as sockjs-client sends. */
const sockjsEscape = (s) => JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
const batch = (frames) => `[${frames.map((f) => sockjsEscape(JSON.stringify(f))).join(',')}]`;

describe('HTTP transports: errors, message bounds, vanished receivers', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], users: [['app1', 'pw']], logLevel: 'info' });
    gw = await startImgw({ prosody });
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
  });

  const api = async (ep, q) => {
    const t0 = Date.now();
    const res = await fetch(`${gw.httpUrl}/api/${ep}?${new URLSearchParams(q)}`, { signal: AbortSignal.timeout(15000) });
    return { status: res.status, json: await res.json(), ms: Date.now() - t0 };
  };

  it('API errors answer the request that caused them, at once, with "for"', async () => {
    const { token } = (await api('login', { user: 'errs1' })).json;
    const cases = [
      ['history', { with: 'app1', limit: '0' }, 'history'],
      ['chats', { limit: '0' }, 'chats'],
      ['read', { with: 'app1', id: 'abc' }, 'read'],
      ['open', { with: 'a b' }, 'open'],
    ];
    for (const [ep, q, op] of cases) {
      const r = await api(ep, { token, ...q });
      // 400 when the gateway refuses the request itself, 200 with an error object when the
      // router answered it (docs/http-api.md).
      assert.ok([200, 400].includes(r.status), `${ep}: ${r.status} ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.for, op, `${ep}: ${JSON.stringify(r.json)}`);
      assert.equal(r.json.error.op, 'error');
      assert.ok(r.ms < 5000, `${ep} took ${r.ms} ms`);
    }
    // Nothing of it waits in the poll queue.
    const poll = await api('poll', { token, timeout: 0 });
    assert.deepEqual(poll.json.frames, []);
  });

  it('over a WebSocket too, bad_frame answers to open/history/chats/read carry "for"', async () => {
    const ws = await openWs(gw.wsUrl);
    await ws.hello('errs2');
    const cases = [
      [{ op: 'history', with: 'app1', limit: 0 }, 'history'],
      [{ op: 'chats', limit: 'x' }, 'chats'],
      [{ op: 'read', with: 'app1', id: 12 }, 'read'],
      [{ op: 'open', with: 5 }, 'open'],
    ];
    for (const [frame, op] of cases) {
      ws.send(frame);
      const e = await ws.next((f) => f.op === 'error');
      assert.equal(e.code, 'bad_frame', JSON.stringify(e));
      assert.equal(e.for, op, JSON.stringify(e));
    }
    ws.ws.close();
  });

  async function sjsSession(prefix, user) {
    const base = `${gw.httpUrl}/sockjs/${prefix}/000/${user}xxxxxxxx`;
    const post = (tp, body = '', headers = {}) => fetch(`${base}/${tp}`, { method: 'POST', body, headers, signal: AbortSignal.timeout(10000) });
    assert.equal(await (await post('xhr')).text(), 'o\n');
    assert.equal((await post('xhr_send', batch([{ op: 'hello', user }]))).status, 204);
    assert.match(await (await post('xhr')).text(), /welcome/);
    /** Frames from receivers until n acks were seen (bounded). */
    const acks = async (n) => {
      const got = [];
      await until(`${n} acks on ${user}`, 10000, async () => {
        const t = await (await post('xhr')).text();
        if (t.startsWith('a')) for (const m of JSON.parse(t.slice(1))) got.push(JSON.parse(m));
        if (t.startsWith('c')) throw new Error(`session closed: ${t}`);
        return got.filter((f) => f.op === 'ack').length >= n;
      });
      return got;
    };
    return { base, post, acks };
  }

  const emoji = '\u{1F600}'.repeat(2000); // 8,000 bytes of UTF-8, 24,000 escaped

  it('xhr_send: an 8,000-byte emoji message and 8 batched 2,000-char messages are delivered', async () => {
    const s = await sjsSession('getUserMsg', 'lim1');
    assert.equal((await s.post('xhr_send', batch([{ op: 'send', to: 'app1', body: emoji, cid: 'e1' }]))).status, 204);
    const eight = Array.from({ length: 8 }, (_, i) => ({ op: 'send', to: 'app1', body: String(i).repeat(2000), cid: `b${i}` }));
    assert.equal((await s.post('xhr_send', batch(eight))).status, 204);
    const got = await s.acks(9);
    assert.deepEqual(got.filter((f) => f.op === 'ack').map((f) => f.cid).sort(), ['b0', 'b1', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'e1']);
  });

  it('jsonp_send: the same batch, form-encoded, is delivered', async () => {
    const s = await sjsSession('getChatList', 'lim2');
    const body = `d=${encodeURIComponent(batch([{ op: 'send', to: 'app1', body: emoji, cid: 'j1' }, { op: 'send', to: 'app1', body: 'x'.repeat(2000), cid: 'j2' }]))}`;
    const r = await s.post('jsonp_send', body, { 'Content-Type': 'application/x-www-form-urlencoded' });
    assert.equal(r.status, 200);
    assert.deepEqual((await s.acks(2)).filter((f) => f.op === 'ack').map((f) => f.cid).sort(), ['j1', 'j2']);
  });

  it('a message past max_frame_bytes is refused loudly: 413 and the session closes with 1009', async () => {
    const s = await sjsSession('getUserMsg', 'lim3');
    const r = await s.post('xhr_send', batch([{ op: 'send', to: 'app1', body: 'y'.repeat(20000), cid: 'big' }]));
    assert.equal(r.status, 413);
    const t = await (await s.post('xhr')).text();
    assert.equal(t, 'c[1009,"message too large"]\n');
  });

  it('framed WebSocket: a batch of large messages in one WebSocket message is delivered', async () => {
    const ws = await openWs(`${gw.wsUrl.replace(/\/ws$/, '')}/sockjs/chat/000/limws1xyz/websocket`);
    const frames = [];
    ws.ws.on('message', (d) => { const t = d.toString(); if (t.startsWith('a')) for (const m of JSON.parse(t.slice(1))) frames.push(JSON.parse(m)); });
    ws.ws.send(batch([{ op: 'hello', user: 'lim4' }]));
    await until('welcome', 5000, async () => frames.some((f) => f.op === 'welcome'));
    ws.ws.send(batch([{ op: 'send', to: 'app1', body: emoji, cid: 'w1' }, ...Array.from({ length: 8 }, (_, i) => ({ op: 'send', to: 'app1', body: 'z'.repeat(2000), cid: `w${i + 2}` }))]));
    await until('9 acks', 10000, async () => frames.filter((f) => f.op === 'ack').length >= 9);
    ws.ws.close();
  });

  it('an aborted receiver is noticed while it waits; the next one is told the session ended', async () => {
    const user = 'gone1';
    const base = `/sockjs/getUserMsg/000/${user}xxxxxxxx`;
    const post = (tp, body = '') => fetch(`${gw.httpUrl}${base}/${tp}`, { method: 'POST', body, signal: AbortSignal.timeout(10000) });
    assert.equal(await (await post('xhr')).text(), 'o\n');
    await post('xhr_send', batch([{ op: 'hello', user }]));
    assert.match(await (await post('xhr')).text(), /welcome/);
    // Wait for the gateway's count of attached receivers: a probing request could take the
    // raw request's place if it came first (and then wait itself).
    const attached = () => gw.metric('imgw_sockjs_receivers_total');
    const before = await attached();
    const c = await rawConnect(gw.port);
    c.write(`POST ${base}/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
    await until('the receiver waits', 5000, async () => (await attached()) > before);
    assert.ok((await (await post('xhr')).text()).startsWith('c[2010'), 'a second receiver is refused');
    c.destroy(); // the browser goes away (a reload)
    // Noticed within seconds, far below the 25 s heartbeat: until then a new receiver
    // would get c[2010,"Another connection still open"].
    let last = '';
    await until('the session ends after its receiver vanished', 5000, async () => {
      last = await (await post('xhr')).text();
      return last === 'c[1002,"Connection interrupted"]\n';
    }, () => `last answer: ${last}`);
  });
});
