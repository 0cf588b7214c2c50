// Picture upload and /files/, end to end against a real gateway (and Prosody for the
// image message). Run: node --test tests/http/
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { makeJpeg, makePng } from '../lib/images.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const PNG = makePng(40, 40);
const JPEG = makeJpeg(2000);

/** POST with node:http so an early answer (413) is read even while the body is refused. */
function rawPost(url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'Content-Length': body.length, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('picture upload', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, dir, token;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-up-'));
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { upload_dir: dir, upload_max_bytes: 65536 } });
    token = (await (await fetch(`${gw.httpUrl}/api/login?user=up1`)).json()).token;
  });
  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('raw PNG round trip: stored, served with type and cache headers, sent as an image message', async () => {
    const r = await rawPost(`${gw.httpUrl}/upload?token=${token}`, PNG, { 'Content-Type': 'application/octet-stream' });
    assert.equal(r.status, 200, r.text);
    const up = JSON.parse(r.text);
    assert.equal(up.kind, 'image');
    assert.equal(up.type, 'image/png');
    assert.equal(up.bytes, PNG.length);
    assert.match(up.url, new RegExp(`^http://127\\.0\\.0\\.1:${gw.port}/files/[0-9a-f]{32}\\.png$`));
    const res = await fetch(up.url);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(PNG));
    assert.deepEqual(fs.readdirSync(dir).filter((n) => n.startsWith('.tmp')), []);
    const ack = await (await fetch(`${gw.httpUrl}/api/send?${new URLSearchParams({ token, to: 'up2', body: up.url, cid: 'i1', kind: 'image' })}`)).json();
    assert.equal(ack.op, 'ack');
  });

  it('multipart/form-data JPEG (what an old page sends)', async () => {
    const fd = new FormData();
    fd.append('note', 'x');
    fd.append('file', new Blob([JPEG], { type: 'image/jpeg' }), 'photo.jpeg');
    const res = await fetch(`${gw.httpUrl}/upload?token=${token}&callback=cb`, { method: 'POST', body: fd });
    const text = await res.text();
    assert.match(text, /^\/\*\*\/cb\(/);
    const up = JSON.parse(text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')));
    assert.equal(up.type, 'image/jpeg');
    assert.equal(up.bytes, JPEG.length);
    const got = Buffer.from(await (await fetch(up.url)).arrayBuffer());
    assert.ok(got.equals(JPEG));
  });

  it('oversized upload: 413, nothing kept', async () => {
    const big = Buffer.concat([PNG, Buffer.alloc(70000)]);
    const before = fs.readdirSync(dir).length;
    const r = await rawPost(`${gw.httpUrl}/upload?token=${token}`, big).catch((e) => ({ status: 'error', text: e.message }));
    assert.equal(r.status, 413, r.text);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(fs.readdirSync(dir).length, before);
  });

  it('a text file named x.png with Content-Type image/png is refused with 415', async () => {
    const fd = new FormData();
    fd.append('file', new Blob(['just some text, not a picture at all'], { type: 'image/png' }), 'x.png');
    const res = await fetch(`${gw.httpUrl}/upload?token=${token}`, { method: 'POST', body: fd });
    assert.equal(res.status, 415);
    assert.equal((await res.json()).error.code, 'unsupported_type');
    const raw = await rawPost(`${gw.httpUrl}/upload?token=${token}`, Buffer.from('hello world, plain text'), { 'Content-Type': 'image/png' });
    assert.equal(raw.status, 415);
  });

  it('bad token 401; path traversal on /files is 404', async () => {
    assert.equal((await rawPost(`${gw.httpUrl}/upload?token=bad`, PNG)).status, 401);
    for (const p of ['/files/../imgw.conf', '/files/%2e%2e%2fimgw.conf', '/files/..%2f..%2fetc%2fpasswd', `/files/${'a'.repeat(32)}.png`, '/files/x.png']) {
      const res = await new Promise((resolve) => http.get(`${gw.httpUrl}${p}`, resolve));
      res.resume();
      assert.equal(res.statusCode, 404, p);
    }
  });
});
