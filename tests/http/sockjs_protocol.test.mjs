// The SockJS 0.3 protocol, point by point, against the gateway's /sockjs/ prefixes: URLs
// and id rules, framing (o, h, a[...], c[code,"reason"]), JSON arrays and escaping, every
// transport's content type and wrapping, CORS and preflights, caching headers, streaming
// preludes and limits, HTTP/1.0 and 1.1, framed and raw WebSocket. Written from the
// protocol's documentation (sockjs-protocol 0.3). Where the gateway deviates on purpose
// (docs/http-api.md, "Deliberate deviations"), the test asserts the gateway's behaviour
// and says so. Echo is played by the protocol's ping/pong after a development-mode hello.
import { after, before, describe, it } from '../lib/test.mjs';
import { until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { rawConnect, rawRequest } from '../lib/rawhttp.mjs';

const DOMAIN = 'shop.test';
const NOCACHE = 'no-store, no-cache, no-transform, must-revalidate, max-age=0';
let n = 0;
const sid = () => `s${process.pid}x${++n}yz`;

describe('SockJS 0.3 protocol conformance', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, base, ORIGIN;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { auth_timeout_ms: 60000, allowed_origins: 'http://page.example' } });
    base = `${gw.httpUrl}/sockjs/getUserMsg`;
    ORIGIN = 'http://page.example';
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
  });

  const req = async (method, url, { body, headers = {} } = {}) => {
    const res = await fetch(url, { method, body, headers, signal: AbortSignal.timeout(10000) });
    return { status: res.status, h: res.headers, body: await res.text() };
  };
  const GET = (u, o) => req('GET', u, o);
  const POST = (u, o) => req('POST', u, o);
  const OPTIONS = (u, o) => req('OPTIONS', u, o);
  const hello = (user) => JSON.stringify([JSON.stringify({ op: 'hello', user })]);
  const ping = (t) => JSON.stringify([JSON.stringify({ op: 'ping', t })]);
  /** An authenticated xhr session: o, hello, welcome. */
  async function session(prefix = base) {
    const url = `${prefix}/000/${sid()}`;
    assert.equal((await POST(`${url}/xhr`)).body, 'o\n');
    assert.equal((await POST(`${url}/xhr_send`, { body: hello(`u${n}`) })).status, 204);
    assert.match((await POST(`${url}/xhr`)).body, /^a\[".*welcome/);
    return url;
  }

  describe('base URL, greeting and 404s', () => {
    it('GET base and base/ greet with text/plain; other paths are 404; POST is 405', async () => {
      for (const u of [base, `${base}/`]) {
        const r = await GET(u);
        assert.equal(r.status, 200);
        assert.equal(r.h.get('content-type'), 'text/plain; charset=UTF-8');
        assert.equal(r.body, 'Welcome to SockJS!\n');
        assert.equal(r.h.get('set-cookie'), null);
      }
      for (const s of ['/a', '/a.html', '/a/a', '/a/a/', '/a/']) assert.equal((await GET(`${base}${s}`)).status, 404, s);
      assert.equal((await POST(base)).status, 405);
      // Deliberate deviation: libwebsockets folds "//" into "/", so base// and base/// greet.
      assert.equal((await GET(`${base}//`)).status, 200);
    });
  });

  describe('iframe page', () => {
    it('iframe.html, iframe-VERSION.html and a query string: cached a year, with ETag and Expires', async () => {
      for (const s of ['/iframe.html', '/iframe-a.html', '/iframe-0.3.4.html', '/iframe.html?t=1234']) {
        const r = await GET(`${base}${s}`);
        assert.equal(r.status, 200, s);
        assert.equal(r.h.get('content-type'), 'text/html; charset=UTF-8');
        assert.equal(r.h.get('cache-control'), 'public, max-age=31536000');
        assert.ok(Date.parse(r.h.get('expires')) > Date.now() + 300 * 86400e3, 'Expires a year ahead');
        assert.ok(r.h.get('etag'));
        assert.equal(r.h.get('set-cookie'), null);
        assert.match(r.body, /SockJS\.bootstrap_iframe\(\)/);
        assert.match(r.body, /document\.domain = document\.domain/);
      }
      for (const s of ['/iframe.htm', '/iframe', '/IFRAME.HTML', '/IFRAME', '/iframe.HTML', '/iframe.xml', '/iframe-/.html']) {
        assert.equal((await GET(`${base}${s}`)).status, 404, s);
      }
    });

    it('If-None-Match answers 304 without body or Content-Type; framing is limited by CSP', async () => {
      const first = await GET(`${base}/iframe.html`);
      const r = await GET(`${base}/iframe.html`, { headers: { 'If-None-Match': first.h.get('etag') } });
      assert.equal(r.status, 304);
      assert.equal(r.h.get('content-type'), null);
      assert.equal(r.body, '');
      assert.equal(first.h.get('content-security-policy'), "frame-ancestors 'self' http://page.example");
    });
  });

  describe('/info', () => {
    it('JSON, never cached, with websocket, cookie_needed, origins and a fresh entropy', async () => {
      const a = await GET(`${base}/info`, { headers: { Origin: ORIGIN } });
      assert.equal(a.status, 200);
      assert.equal(a.h.get('content-type'), 'application/json; charset=UTF-8');
      assert.equal(a.h.get('cache-control'), NOCACHE);
      assert.equal(a.h.get('access-control-allow-origin'), ORIGIN);
      assert.equal(a.h.get('access-control-allow-credentials'), 'true');
      const j = JSON.parse(a.body);
      assert.equal(j.websocket, true);
      assert.equal(j.cookie_needed, false);
      assert.deepEqual(j.origins, ['page.example']);
      const k = JSON.parse((await GET(`${base}/info`)).body);
      assert.ok(Number.isInteger(j.entropy) && j.entropy !== k.entropy);
    });

    it('OPTIONS /info: 204, methods, max-age, Expires, CORS; a null Origin gets no grant', async () => {
      const r = await OPTIONS(`${base}/info`, { headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'GET' } });
      assert.equal(r.status, 204);
      assert.equal(r.body, '');
      assert.match(r.h.get('access-control-allow-methods'), /OPTIONS/);
      assert.match(r.h.get('access-control-allow-methods'), /GET/);
      assert.equal(r.h.get('access-control-max-age'), '31536000');
      assert.equal(r.h.get('cache-control'), 'public, max-age=31536000');
      assert.ok(Date.parse(r.h.get('expires')) > Date.now());
      assert.equal(r.h.get('access-control-allow-origin'), ORIGIN);
      // Deliberate deviation: "null" (sandboxed frames) is not an allowed origin here.
      const n0 = await OPTIONS(`${base}/info`, { headers: { Origin: 'null' } });
      assert.equal(n0.h.get('access-control-allow-origin'), null);
    });
  });

  describe('session URLs', () => {
    it('server and session ids: any text without dots (a %20 is a space); 8+ characters for a session', async () => {
      for (const part of [`/a/${sid()}`, `/_/_${sid()}`, `/1/abcdefgh_i-j%20${n}`, `/abcdefgh_i-j%20/abcdefg_i-j%20${n}`]) {
        const r = await POST(`${base}${part}/xhr`);
        assert.equal(r.status, 200, part);
        assert.equal(r.body, 'o\n', part);
      }
      for (const part of ['/a./abcdefgh1', '/a/abcdefgh.', '/./.', '/abc/abcdefg']) {
        assert.equal((await POST(`${base}${part}/xhr`)).status, 404, part);
      }
      // A short id is refused at the session, after the checks every request gets.
      assert.equal((await GET(`${base}/a/a/jsonp`)).status, 500);
      assert.equal((await GET(`${base}/a/a/jsonp`)).body, '"callback" parameter required');
      assert.equal((await GET(`${base}/0/0/websocket`)).status, 400);
    });

    it('the server id is ignored: another server id reaches the same session', async () => {
      const s = sid();
      assert.equal((await POST(`${base}/000/${s}/xhr`)).body, 'o\n');
      assert.equal((await POST(`${base}/000/${s}/xhr_send`, { body: hello('srv1') })).status, 204);
      assert.match((await POST(`${base}/999/${s}/xhr`)).body, /welcome/);
    });
  });

  describe('framing over xhr polling', () => {
    it('o, then a[...] arrays of messages, then 204 for sends; bad bodies are refused', async () => {
      const url = await session();
      const r = await POST(`${url}/xhr_send`, { body: `[${JSON.stringify(JSON.stringify({ op: 'ping', t: 1 }))},${JSON.stringify(JSON.stringify({ op: 'ping', t: 2 }))}]` });
      assert.equal(r.status, 204);
      assert.equal(r.body, '');
      assert.equal(r.h.get('content-type'), 'text/plain; charset=UTF-8');
      const got = await POST(`${url}/xhr`);
      assert.equal(got.h.get('content-type'), 'application/javascript; charset=UTF-8');
      assert.equal(got.h.get('cache-control'), NOCACHE);
      assert.deepEqual(JSON.parse(got.body.slice(1)).map((m) => JSON.parse(m)), [{ op: 'pong', t: 1 }, { op: 'pong', t: 2 }]);
      assert.equal((await POST(`${url}/xhr_send`, { body: '[]' })).status, 204);
      const bad = await POST(`${url}/xhr_send`, { body: '["x' });
      assert.equal(bad.status, 500);
      assert.equal(bad.body, 'Broken JSON encoding.');
      const none = await POST(`${url}/xhr_send`);
      assert.equal(none.status, 500);
      assert.equal(none.body, 'Payload expected.');
      assert.equal((await POST(`${base}/000/nosuchsession/xhr_send`, { body: '["x"]' })).status, 404);
      // Deliberate deviation: a NUL inside a message is refused (protocol frames are text).
      assert.equal((await POST(`${url}/xhr_send`, { body: '["\\u0000"]' })).status, 500);
    });

    it('an aborted receiver is noticed by the next one at once: c[1002], not c[2010]', async () => {
      const s = sid();
      assert.equal((await POST(`${base}/000/${s}/xhr`)).body, 'o\n');
      // The raw request attaches as the receiver; a probing request could take its place if it
      // came first, so wait for the gateway's count of attached receivers instead.
      const attached = () => gw.metric('imgw_sockjs_receivers_total');
      const before = await attached();
      const c = await rawConnect(gw.port);
      c.write(`POST /sockjs/getUserMsg/000/${s}/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
      await until('the receiver waits', 5000, async () => (await attached()) > before);
      assert.ok((await POST(`${base}/000/${s}/xhr`)).body.startsWith('c[2010'), 'a second receiver is refused');
      c.destroy();
      await c.closed(1000);
      assert.equal((await POST(`${base}/000/${s}/xhr`)).body, 'c[1002,"Connection interrupted"]\n');
    });

    it('a second receiver gets c[2010]; a closed session answers its close frame to every receiver', async () => {
      const url = `${base}/000/${sid()}`;
      assert.equal((await POST(`${url}/xhr`)).body, 'o\n');
      const attached = () => gw.metric('imgw_sockjs_receivers_total');
      const before = await attached();
      const waiting = POST(`${url}/xhr`);
      await until('the first receiver waits', 5000, async () => (await attached()) > before);
      assert.equal((await POST(`${url}/xhr`)).body, 'c[2010,"Another connection still open"]\n');
      // A bad hello: the gateway closes with 4401; the waiting receiver gets the frames.
      await POST(`${url}/xhr_send`, { body: JSON.stringify([JSON.stringify({ op: 'hello' })]) });
      const w = await waiting;
      assert.match(w.body, /^a\[/);
      const c1 = await POST(`${url}/xhr`);
      assert.match(c1.body, /^c\[4401,"/);
      assert.equal((await POST(`${url}/xhr`)).body, c1.body);
    });
  });

  describe('escaping', () => {
    it('the server escapes U+200C-200F, U+2028-202F, U+2060-206F and U+FFF0-FFFF (and <, >, &)', async () => {
      const url = await session();
      const chars = [];
      for (const [a, b] of [[0x200c, 0x200f], [0x2028, 0x202f], [0x2060, 0x206f], [0xfff0, 0xffff]]) for (let c = a; c <= b; c++) chars.push(c);
      const text = String.fromCharCode(...chars.filter((c) => c !== 0xfffe && c !== 0xffff));
      assert.equal((await POST(`${url}/xhr_send`, { body: ping(`${text}<>&`) })).status, 204);
      const body = (await POST(`${url}/xhr`)).body;
      for (const c of text) assert.ok(!body.includes(c), `raw U+${c.charCodeAt(0).toString(16)} in the frame`);
      assert.match(body, /\\u200c/);
      assert.match(body, /\\u003c/);
      const t = JSON.parse(JSON.parse(body.slice(1))[0]).t;
      assert.equal(t, `${text}<>&`);
    });

    it('the server decodes what clients escape (every \\uXXXX, surrogate pairs)', async () => {
      const url = await session();
      const s = 'caf\u00e9 \u{1F600} \u00ad\u0600\u17b4\ufeff';
      const escaped = JSON.stringify(JSON.stringify({ op: 'ping', t: s })).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
      assert.equal((await POST(`${url}/xhr_send`, { body: `[${escaped}]` })).status, 204);
      assert.equal(JSON.parse(JSON.parse((await POST(`${url}/xhr`)).body.slice(1))[0]).t, s);
    });
  });

  describe('transports: content types and wrapping', () => {
    it('jsonp: callback required and checked; frames wrapped /**/cb("...");', async () => {
      const s = sid();
      const u = `${base}/000/${s}`;
      assert.equal((await GET(`${u}/jsonp`)).status, 500);
      assert.equal((await GET(`${u}/jsonp`)).body, '"callback" parameter required');
      assert.equal((await GET(`${u}/jsonp?c=%3Chtml%3E`)).status, 500);
      const r = await GET(`${u}/jsonp?c=x.y_z`);
      assert.equal(r.h.get('content-type'), 'application/javascript; charset=UTF-8');
      assert.equal(r.h.get('cache-control'), NOCACHE);
      assert.equal(r.body, '/**/x.y_z("o");\r\n');
      const send = await POST(`${u}/jsonp_send`, { body: `d=${encodeURIComponent(hello('jp1'))}`, headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
      assert.equal(send.status, 200);
      assert.equal(send.body, 'ok');
      assert.equal(send.h.get('content-type'), 'text/plain; charset=UTF-8');
      const raw = await POST(`${u}/jsonp_send`, { body: ping(5), headers: { 'Content-Type': 'text/plain' } });
      assert.equal(raw.body, 'ok');
      assert.match((await GET(`${u}/jsonp?c=cb`)).body, /^\/\*\*\/cb\("a\[.*welcome.*pong/);
      assert.equal((await POST(`${u}/jsonp_send`, { body: 'd=', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } })).status, 500);
    });

    it('eventsource: text/event-stream, \\r\\n prelude, data: frames', async () => {
      const c = await rawConnect(gw.port);
      c.write(`GET /sockjs/getUserMsg/000/${sid()}/eventsource HTTP/1.1\r\nHost: x\r\n\r\n`);
      const h = await c.head();
      assert.equal(h.status, 200);
      assert.equal(h.headers['content-type'], 'text/event-stream');
      assert.equal(h.headers['cache-control'], NOCACHE);
      assert.equal(h.headers['transfer-encoding'], 'chunked');
      assert.equal(await c.chunk(), '\r\n');
      assert.equal(await c.chunk(), 'data: o\r\n\r\n');
      c.destroy();
    });

    it('eventsource: a frame is escaped for decodeURI (% as %25), so a body with "%" reaches the client', async () => {
      const u = await session();
      const c = await rawConnect(gw.port);
      c.write(`GET ${u.replace(/^http:\/\/[^/]+/, '')}/eventsource HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal((await c.head()).status, 200);
      assert.equal(await c.chunk(), '\r\n');
      assert.equal((await POST(`${u}/xhr_send`, { body: ping('50% off %0A') })).status, 204);
      const ev = await c.chunk();
      assert.match(ev, /^data: a\[.*pong.*\r\n\r\n$/);
      const data = ev.slice('data: '.length, -4);
      assert.ok(data.includes('50%25 off %250A'), `escaped: ${data}`);
      // What sockjs-client does with it: decodeURI, then the frame.
      const frames = JSON.parse(decodeURI(data).slice(1)).map((m) => JSON.parse(m));
      assert.deepEqual(frames, [{ op: 'pong', t: '50% off %0A' }]);
      c.destroy();
    });

    it('htmlfile: text/html, a prelude of 1 KiB or more defining p() with the callback', async () => {
      const c = await rawConnect(gw.port);
      c.write(`GET /sockjs/getUserMsg/000/${sid()}/htmlfile?c=%63allback HTTP/1.1\r\nHost: x\r\n\r\n`);
      const h = await c.head();
      assert.equal(h.headers['content-type'], 'text/html; charset=UTF-8');
      const pre = await c.chunk();
      assert.ok(pre.length >= 1024, `prelude is ${pre.length} bytes`);
      // The page as the protocol's documentation gives it.
      assert.equal(pre.trim(), ['<!doctype html>', '<html><head>',
        '  <meta http-equiv="X-UA-Compatible" content="IE=edge" />',
        '  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />',
        '</head><body><h2>Don\'t panic!</h2>', '  <script>', '    document.domain = document.domain;',
        '    var c = parent.callback;', '    c.start();', '    function p(d) {c.message(d);};',
        '    window.onload = function() {c.stop();};', '  </script>'].join('\n'));
      assert.equal(await c.chunk(), '<script>\np("o");\n</script>\r\n');
      c.destroy();
      assert.equal((await GET(`${base}/000/${sid()}/htmlfile`)).status, 500);
    });

    it('xhr_streaming: 2048 h and \\n, then frames, ending after 128 KiB', async () => {
      const s = sid();
      const c = await rawConnect(gw.port);
      c.write(`POST /sockjs/getUserMsg/000/${s}/xhr_streaming HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
      const h = await c.head();
      assert.equal(h.headers['content-type'], 'application/javascript; charset=UTF-8');
      assert.equal(await c.chunk(), `${'h'.repeat(2048)}\n`);
      assert.equal(await c.chunk(), 'o\n');
      const send = (b) => POST(`${base}/000/${s}/xhr_send`, { body: b });
      assert.equal((await send(hello('st1'))).status, 204);
      let total = 0;
      const big = 'x'.repeat(15000);
      for (let i = 0; i < 10; i++) assert.equal((await send(ping(big))).status, 204);
      for (;;) {
        const part = await c.chunk(10000);
        if (part === '') break; // the last chunk: the response ended at the limit
        total += part.length;
      }
      assert.ok(total >= 128 * 1024, `ended after ${total} bytes`);
      assert.equal(await c.closed(300), false, 'HTTP/1.1: the connection stays usable');
      c.destroy();
    });

    it('every receiver and send method other than its own is 405; an unknown transport is 404', async () => {
      const u = `${base}/000/${sid()}`;
      assert.equal((await GET(`${u}/xhr`)).status, 405);
      assert.equal((await GET(`${u}/xhr_send`)).status, 405);
      assert.equal((await POST(`${u}/eventsource`)).status, 405);
      assert.equal((await GET(`${u}/jsonp_send`)).status, 405);
      assert.equal((await POST(`${u}/nope`)).status, 404);
    });
  });

  describe('CORS and caching', () => {
    it('xhr receivers and sends grant the Origin with credentials; without Origin, "*"', async () => {
      const u = `${base}/000/${sid()}`;
      const a = await POST(`${u}/xhr`, { headers: { Origin: ORIGIN } });
      assert.equal(a.h.get('access-control-allow-origin'), ORIGIN);
      assert.equal(a.h.get('access-control-allow-credentials'), 'true');
      const b = await POST(`${base}/000/${sid()}/xhr`);
      assert.equal(b.h.get('access-control-allow-origin'), '*');
      assert.equal(b.h.get('access-control-allow-credentials'), null);
      assert.equal(b.h.get('cache-control'), NOCACHE);
      assert.equal(b.h.get('expires'), null);
      assert.equal(b.h.get('last-modified'), null);
    });

    it('preflights echo Access-Control-Request-Headers and are cached a year', async () => {
      for (const tp of ['xhr', 'xhr_streaming', 'xhr_send']) {
        const r = await OPTIONS(`${base}/000/${sid()}/${tp}`, { headers: { Origin: ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'a, b, c' } });
        assert.equal(r.status, 204, tp);
        assert.equal(r.h.get('access-control-allow-headers'), 'a, b, c');
        assert.equal(r.h.get('access-control-allow-methods'), 'OPTIONS, POST');
        assert.equal(r.h.get('access-control-allow-origin'), ORIGIN);
        assert.equal(r.h.get('access-control-allow-credentials'), 'true');
        assert.equal(r.h.get('cache-control'), 'public, max-age=31536000');
        assert.ok(Date.parse(r.h.get('expires')) > Date.now() + 300 * 86400e3);
      }
    });
  });

  describe('HTTP/1.0 and HTTP/1.1', () => {
    it('HTTP/1.0: Content-Length and Connection: close, then the socket closes', async () => {
      const c = await rawConnect(gw.port);
      c.write(`GET /sockjs/getUserMsg HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n`);
      const r = await c.response();
      assert.equal(r.status, 200);
      assert.equal(r.headers['transfer-encoding'], undefined);
      assert.equal(r.headers['content-length'], '19');
      assert.equal(r.headers.connection, 'close');
      assert.equal(r.body, 'Welcome to SockJS!\n');
      assert.equal(await c.closed(2000), true);
    });

    it('HTTP/1.0 streaming: no chunking, no length, ends with the connection', async () => {
      const s = sid();
      const c = await rawConnect(gw.port);
      c.write(`POST /sockjs/getUserMsg/000/${s}/xhr_streaming HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n`);
      const h = await c.head();
      assert.equal(h.headers['transfer-encoding'], undefined);
      assert.equal(h.headers['content-length'], undefined);
      assert.equal(await c.read(2049), `${'h'.repeat(2048)}\n`);
      assert.equal(await c.read(2), 'o\n');
      await POST(`${base}/000/${s}/xhr_send`, { body: JSON.stringify([JSON.stringify({ op: 'hello' })]) });
      await until('the close frame', 5000, async () => { await c.read(1, 5000); return true; });
      assert.equal(await c.closed(5000), true);
    });

    it('HTTP/1.1: keep-alive by default; a second request on the same connection', async () => {
      const c = await rawConnect(gw.port);
      c.write(`GET /sockjs/getUserMsg HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive\r\n\r\n`);
      const r = await c.response();
      assert.equal(r.body, 'Welcome to SockJS!\n');
      assert.ok(['keep-alive', undefined].includes(r.headers.connection));
      c.write(`GET /sockjs/getUserMsg HTTP/1.1\r\nHost: x\r\n\r\n`);
      assert.equal((await c.response()).status, 200);
      c.destroy();
    });

    it('Content-Length with Transfer-Encoding is 400', async () => {
      const r = await rawRequest(gw.port, `POST /sockjs/getUserMsg/000/${sid()}/xhr HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
      assert.equal(r.status, 400);
    });
  });

  describe('WebSocket', () => {
    const wsUrl = (tail) => `${gw.wsUrl.replace(/\/ws$/, '')}/sockjs/getUserMsg${tail}`;

    /** Every text message of ws so far, as strings (openWs keeps them all in raw). */
    const texts = (ws) => ws.raw.map((d) => d.toString());

    it('framed: o, empty messages and [] ignored, arrays in, a[...] out, a bare string too', async () => {
      const ws = await openWs(wsUrl(`/000/${sid()}/websocket`));
      await until('o', 5000, async () => texts(ws)[0] === 'o');
      ws.ws.send('');
      ws.ws.send('[]');
      ws.ws.send(hello('wsf1'));
      await until('welcome', 5000, async () => texts(ws).some((f) => /welcome/.test(f)));
      ws.ws.send(JSON.stringify(JSON.stringify({ op: 'ping', t: 'bare' })));
      await until('pong', 5000, async () => texts(ws).some((f) => f.startsWith('a[') && /pong/.test(f)));
      // Heartbeats come only after 25 s without a frame: none so far.
      assert.ok(!texts(ws).includes('h'), JSON.stringify(texts(ws)));
      ws.ws.close();
    });

    it('framed: broken JSON closes the connection', async () => {
      const ws = await openWs(wsUrl(`/000/${sid()}/websocket`));
      ws.ws.send('["a');
      await ws.closed;
      assert.ok(texts(ws).includes('c[1002,"Broken framing."]'), JSON.stringify(texts(ws)));
    });

    it('framed: the session id may be reused by several WebSockets', async () => {
      const s = sid();
      const a = await openWs(wsUrl(`/000/${s}/websocket`));
      const b = await openWs(wsUrl(`/000/${s}/websocket`));
      await until('both open', 5000, async () => texts(a)[0] === 'o' && texts(b)[0] === 'o');
      a.ws.close();
      b.ws.close();
    });

    it('framed: a close from the server is c[code,"reason"], then the WebSocket close', async () => {
      const ws = await openWs(wsUrl(`/000/${sid()}/websocket`));
      ws.ws.send(JSON.stringify([JSON.stringify({ op: 'hello' })]));
      const { code } = await ws.closed;
      assert.ok(texts(ws).some((f) => /^c\[4401,"/.test(f)), JSON.stringify(texts(ws)));
      assert.equal(code, 1000);
    });

    it('GET without Upgrade is 400; POST to a WebSocket URL is 405 with Allow: GET', async () => {
      const r = await GET(`${base}/000/${sid()}/websocket`);
      assert.equal(r.status, 400);
      assert.equal(r.body, 'Can "Upgrade" only to "WebSocket".');
      const p = await POST(`${base}/websocket`);
      assert.equal(p.status, 405);
      assert.equal(p.h.get('allow'), 'GET');
    });

    it('raw: /websocket carries protocol frames as they are', async () => {
      const ws = await openWs(wsUrl('/websocket'));
      ws.ws.send(JSON.stringify({ op: 'hello', user: 'raw1' }));
      const w = await ws.next((f) => f.op === 'welcome');
      assert.equal(w.user, 'raw1');
      ws.ws.close();
    });

    it('framed: "h" after 25 s without a frame', { timeout: 60000 }, async () => {
      const ws = await openWs(wsUrl(`/000/${sid()}/websocket`));
      ws.ws.send(hello('wshb'));
      await until('welcome', 5000, async () => texts(ws).some((f) => /welcome/.test(f)));
      const t0 = Date.now();
      await until('a heartbeat', 40000, async () => texts(ws).includes('h'));
      assert.ok(Date.now() - t0 > 20000, `h after ${Date.now() - t0} ms`);
      ws.ws.close();
    });
  });
});
