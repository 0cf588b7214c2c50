// docker/nginx.conf in front of two real gateways: the reverse proxy of the container stack,
// run with Debian's nginx on loopback (gateway addresses, ports and the certificate swapped
// for the test's own). A WebSocket and a JSONP long poll go through TLS to a gateway, the
// plain port redirects, /metrics stays inside, and the timeouts of the WebSocket and
// long-poll locations outlast what the gateway and the JS client need.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { freePorts, waitForPort } from '../lib/ports.mjs';
import { within } from '../lib/bounded.mjs';
import { spawnTracked } from '../lib/procs.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CONF = fs.readFileSync(path.join(REPO, 'docker', 'nginx.conf'), 'utf8');
const haveNginx = (() => { try { execFileSync('nginx', ['-v'], { stdio: 'ignore' }); return true; } catch { return false; } })();

/** Seconds of an nginx time value (75s, 1h, 30). */
function seconds(v) {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(v);
  assert.ok(m, `time value ${v}`);
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] || 's'];
}

/** The directives of the location block `location <match>` (first occurrence). */
function locationBlock(match) {
  const i = CONF.indexOf(`location ${match} {`);
  assert.ok(i >= 0, `nginx.conf has location ${match}`);
  return CONF.slice(i, CONF.indexOf('}', i));
}

function get(url) {
  return within(new Promise((resolve, reject) => {
    const mod = url.startsWith('https:') ? https : http;
    const req = mod.get(url, { rejectUnauthorized: false }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
  }), 40000, `GET ${url}`);
}

describe('nginx reverse proxy (docker/nginx.conf)', { skip: (!gatewayBuilt() && 'gateway not built') || (!haveNginx && 'nginx not installed') }, () => {
  let gw1, gw2, nginx, dir, tlsPort, plainPort;

  before(async () => {
    gw1 = await startImgw({ waitLinkUp: false, config: { allowed_origins: 'https://shop.example' } });
    gw2 = await startImgw({ waitLinkUp: false, config: { allowed_origins: 'https://shop.example' } });
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'imgw-proxy-'));
    [tlsPort, plainPort] = await freePorts(2);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-keyout', path.join(dir, 'privkey.pem'), '-out', path.join(dir, 'fullchain.pem')], { stdio: 'ignore' });
    const conf = CONF
      .replace('imgw1:8480', `127.0.0.1:${gw1.port}`)
      .replace('imgw2:8480', `127.0.0.1:${gw2.port}`)
      .replace(/listen 443 ssl http2;/, `listen 127.0.0.1:${tlsPort} ssl http2;`)
      .replace(/listen \[::\]:443 ssl http2;/, '')
      .replace(/listen 80;/, `listen 127.0.0.1:${plainPort};`)
      .replace(/listen \[::\]:80;/, '')
      .replaceAll('/etc/nginx/certs', dir)
      .replace('pid /tmp/nginx.pid;', `pid ${dir}/nginx.pid;`);
    const directives = conf.split('\n').filter((l) => !/^\s*#/.test(l)).join('\n');
    assert.doesNotMatch(directives, /imgw[12]:8480|listen 443|listen 80;|\/etc\/nginx/, 'every host path and port was replaced');
    fs.writeFileSync(path.join(dir, 'nginx.conf'), conf);
    fs.mkdirSync(path.join(dir, 'logs'));
    const log = fs.openSync(path.join(dir, 'nginx.log'), 'a');
    nginx = spawnTracked('nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'logs', 'error.log'),
      '-g', 'daemon off; master_process off;'], { stdio: ['ignore', log, log] }, 'nginx');
    fs.closeSync(log);
    await waitForPort(tlsPort);
  });

  after(async () => {
    if (nginx?.alive()) await nginx.stopWith('SIGTERM', 10000);
    await gw1?.cleanup();
    await gw2?.cleanup();
    if (dir) await fs.promises.rm(dir, { recursive: true, force: true });
  });

  it('carries a WebSocket session through TLS to a gateway', async () => {
    const ws = new WebSocket(`wss://127.0.0.1:${tlsPort}/ws`, { rejectUnauthorized: false, headers: { Origin: 'https://shop.example' } });
    const frames = [];
    const next = (pred) => within(new Promise((resolve) => {
      const check = () => { const i = frames.findIndex(pred); if (i >= 0) resolve(frames.splice(i, 1)[0]); else setTimeout(check, 10); };
      check();
    }), 5000, 'frame through the proxy');
    ws.on('message', (d) => frames.push(JSON.parse(d.toString())));
    await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 5000, 'wss open');
    ws.send(JSON.stringify({ op: 'hello', v: 1, user: 'alice' }));
    assert.equal((await next((f) => f.op === 'welcome' || f.op === 'error')).op, 'welcome');
    ws.send(JSON.stringify({ op: 'ping', t: 7 }));
    assert.equal((await next((f) => f.op === 'pong')).t, 7);
    // The gateway that got it counts the session.
    const counts = [(await gw1.health()).sessions, (await gw2.health()).sessions];
    assert.equal(counts[0] + counts[1], 1);
    ws.close();
  });

  it('holds a JSONP long poll open until the gateway answers, unbuffered', async () => {
    const login = JSON.parse((await get(`https://127.0.0.1:${tlsPort}/api/login?user=bob`)).body);
    assert.ok(login.token);
    const t0 = Date.now();
    const poll = await get(`https://127.0.0.1:${tlsPort}/api/poll?token=${login.token}&timeout=3`);
    assert.equal(poll.status, 200);
    assert.deepEqual(JSON.parse(poll.body).frames, []);
    assert.ok(Date.now() - t0 >= 2500, 'the poll waited at the gateway (the proxy did not cut it)');
  });

  it('redirects plain HTTP, keeps /metrics inside, passes /health', async () => {
    const r = await get(`http://127.0.0.1:${plainPort}/ws`);
    assert.equal(r.status, 308);
    assert.match(r.headers.location, /^https:\/\/127\.0\.0\.1(:\d+)?\/ws$/);
    assert.equal((await get(`https://127.0.0.1:${tlsPort}/metrics`)).status, 404);
    const h = await get(`https://127.0.0.1:${tlsPort}/health`);
    assert.equal(h.status, 200);
    assert.match(h.body, /"version"/);
  });

  it('gives WebSocket and long-poll locations timeouts longer than the protocol needs', () => {
    // The JS client pings a quiet WebSocket every 25 s (clients/web/imgw.js pingIntervalMs);
    // the gateway holds an API poll or an SockJS polling request up to 25 s.
    const ws = locationBlock('= /ws');
    assert.match(ws, /proxy_set_header Upgrade \$http_upgrade;/);
    assert.match(ws, /proxy_set_header Connection \$connection_upgrade;/);
    assert.ok(seconds(/proxy_read_timeout (\S+);/.exec(ws)[1]) >= 600, 'WebSocket read timeout');
    for (const loc of ['/sockjs/', '/api/']) {
      const b = locationBlock(loc);
      assert.ok(seconds(/proxy_read_timeout (\S+);/.exec(b)[1]) > 25 + 10, `${loc} read timeout`);
      assert.match(b, /proxy_buffering off;/, `${loc} unbuffered`);
    }
    assert.match(locationBlock('/sockjs/'), /proxy_set_header Upgrade \$http_upgrade;/, 'SockJS websocket transport');
  });
});
