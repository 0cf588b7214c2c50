// HTTP/JSON API with JSONP, end to end against a real gateway and Prosody.
// Run: node --test tests/http/
import { after, before, describe, it } from '../lib/test.mjs';
import { scaled } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import vm from 'node:vm';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;

describe('HTTP/JSONP API', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw;
  const api = async (ep, params = {}, init = {}) => {
    const res = await fetch(`${gw.httpUrl}/api/${ep}?${new URLSearchParams(params)}`, init);
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) };
  };
  /** Runs a JSONP answer in a sandbox and returns what the callback received. */
  const runJsonp = (text, name) => {
    let got;
    const ctx = { [name.split('.')[0]]: undefined };
    if (name.includes('.')) ctx[name.split('.')[0]] = { [name.split('.')[1]]: (v) => { got = v; } };
    else ctx[name] = (v) => { got = v; };
    vm.runInNewContext(text, ctx);
    return JSON.parse(JSON.stringify(got));
  };

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { allowed_origins: 'https://shop.example' } });
  });
  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('a GET send: a body with line breaks is refused whole, never cut (400), and arrives intact with body_enc=pct', async () => {
    const a = (await api('login', { user: 'nlalice' })).json();
    const b = (await api('login', { user: 'nlbob' })).json();
    const body = 'one\ntwo\r\nthree 50% + more';
    // lws 4.1 ends the request line at a decoded %0A: without the check the body was cut to 'one'.
    const cut = await api('send', { token: a.token, to: 'nlbob', cid: 'nl0', body });
    assert.equal(cut.status, 400);
    assert.match(cut.text, /line break .* POST/);
    assert.deepEqual((await api('poll', { token: b.token, timeout: 0 })).json().frames, []);
    const ack = await api('send', { token: a.token, to: 'nlbob', cid: 'nl1', body: encodeURIComponent(body), body_enc: 'pct' });
    assert.equal(ack.status, 200, ack.text);
    assert.equal(ack.json().op, 'ack');
    const frames = (await api('poll', { token: b.token, timeout: 5 })).json().frames;
    assert.equal(frames[0].body, 'one\ntwo\nthree 50% + more');
    const bad = await api('send', { token: a.token, to: 'nlbob', cid: 'nl2', body: '%E0%', body_enc: 'pct' });
    assert.equal(bad.status, 400);
    assert.match(bad.text, /body_enc/);
  });

  it('login, send, poll receives, history (no PostgreSQL: error), chats, read, open, logout', async () => {
    const a = (await api('login', { user: 'alice' })).json();
    assert.match(a.token, /^[0-9a-f]{32}$/);
    assert.equal(a.jid, `alice@${GW}`);
    const b = (await api('login', { user: 'bob' })).json();
    assert.notEqual(a.token, b.token);
    const poll = api('poll', { token: b.token, timeout: 10 });
    await new Promise((r) => setTimeout(r, 100));
    const ack = await api('send', { token: a.token, to: 'bob', body: 'a+b & c é 😀', cid: 'c1' });
    assert.equal(ack.status, 200);
    assert.equal(ack.json().op, 'ack');
    assert.equal(ack.json().cid, 'c1');
    const frames = (await poll).json().frames;
    assert.equal(frames.length, 1);
    assert.equal(frames[0].op, 'msg');
    assert.equal(frames[0].body, 'a+b & c é 😀');
    assert.equal(frames[0].from, `alice@${GW}`);
    // POST form send.
    const p = await fetch(`${gw.httpUrl}/api/send`, { method: 'POST', body: new URLSearchParams({ token: a.token, to: 'bob', body: 'posted', cid: 'c2' }) });
    assert.equal((await p.json()).cid, 'c2');
    assert.equal((await api('poll', { token: b.token, timeout: 5 })).json().frames[0].body, 'posted');
    const hist = (await api('history', { token: a.token, with: 'bob' })).json();
    assert.equal(hist.error.code, 'unavailable');
    assert.equal((await api('chats', { token: a.token })).json().error.for, 'chats');
    assert.equal((await api('read', { token: a.token, with: 'bob', id: '1' })).json().error.for, 'read');
    assert.equal((await api('open', { token: a.token, with: 'bob' })).json().with, `bob@${GW}`);
    const bad = (await api('send', { token: a.token, to: 'x@@y', body: 'z', cid: 'c3' })).json();
    assert.equal(bad.error.code, 'bad_recipient');
    assert.equal(bad.error.cid, 'c3');
    assert.deepEqual((await api('logout', { token: a.token })).json(), { ok: true });
    assert.equal((await api('poll', { token: a.token })).status, 401);
    await api('logout', { token: b.token });
  });

  it('JSONP answers are JavaScript calling the callback, with nosniff', async () => {
    const r = await api('login', { user: 'carol', callback: 'jQuery123_456' });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^application\/javascript/);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
    const v = runJsonp(r.text, 'jQuery123_456');
    assert.match(v.token, /^[0-9a-f]{32}$/);
    const e = await api('poll', { token: 'f'.repeat(32), callback: 'ns.cb' });
    assert.equal(e.status, 200);
    assert.equal(runJsonp(e.text, 'ns.cb').error.code, 'bad_token');
    const t = await api('poll', { token: v.token, timeout: 0, callback: 'cb' });
    assert.deepEqual(runJsonp(t.text, 'cb'), { frames: [] });
    await api('logout', { token: v.token });
  });

  it('malicious callback names get 400 JSON and are not reflected', async () => {
    for (const cb of ['alert(1);x', 'a-b', 'a'.repeat(200), 'ünï', 'a..b', '1abc', 'a.b.c.d.e', '<script>']) {
      const r = await api('login', { user: 'mallory', callback: cb });
      assert.equal(r.status, 400, cb);
      assert.match(r.headers.get('content-type'), /^application\/json/);
      assert.equal(r.json().error.code, 'bad_callback');
      assert.ok(!r.text.includes(cb), `reflected ${cb}`);
    }
  });

  it('bad token, missing parameters, unknown endpoint', async () => {
    assert.equal((await api('send', { token: 'nope', to: 'x', body: 'y', cid: 'z' })).json().error.code, 'bad_token');
    assert.equal((await api('login', {})).status, 400);
    assert.equal((await api('nope', {})).status, 404);
    const a = (await api('login', { user: 'dan' })).json();
    assert.equal((await api('send', { token: a.token, to: 'x' })).status, 400);
    assert.equal((await api('poll', { token: a.token, timeout: 99 })).status, 400);
    await api('logout', { token: a.token });
  });

  it('poll timeout is bounded and a second poll answers the first', async () => {
    const a = (await api('login', { user: 'erin' })).json();
    const t0 = Date.now();
    assert.deepEqual((await api('poll', { token: a.token, timeout: 1 })).json(), { frames: [] });
    const dt = Date.now() - t0;
    assert.ok(dt >= 900 && dt < 1000 + scaled(2000), `${dt} ms`);
    const first = api('poll', { token: a.token, timeout: 20 });
    await new Promise((r) => setTimeout(r, 200));
    const second = api('poll', { token: a.token, timeout: 1 });
    assert.deepEqual((await first).json(), { frames: [] });
    assert.deepEqual((await second).json(), { frames: [] });
    await api('logout', { token: a.token });
  });

  it('CORS headers only for allowed origins', async () => {
    const ok = await api('login', { user: 'fay' }, { headers: { Origin: 'https://shop.example' } });
    assert.equal(ok.headers.get('access-control-allow-origin'), 'https://shop.example');
    const no = await api('login', { user: 'fay' }, { headers: { Origin: 'https://evil.example' } });
    assert.equal(no.headers.get('access-control-allow-origin'), null);
    await api('logout', { token: ok.json().token });
    await api('logout', { token: no.json().token });
  });
});
