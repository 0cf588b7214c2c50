// Issue 9, item 6: uploads had no quota or expiry (20 x 1 MB with one token in 0.23 s, all
// kept forever) and "PNG magic followed by HTML" was stored. Now: a per-user rate and
// daily byte quota, a sweeper that removes expired files, a whole-file structure check,
// and /files/ answers that can never run as a page.
import { after, before, describe, it } from '../lib/test.mjs';
import { until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { makePng } from '../lib/images.mjs';

const DOMAIN = 'shop.test';

describe('Uploads: quotas, expiry, strict pictures, inert files', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, dir, stale;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-upsec-'));
    // A picture stored 3 hours ago: expired with upload_expiry_hours = 1.
    stale = path.join(dir, `${'ab'.repeat(16)}.png`);
    fs.writeFileSync(stale, makePng(4, 4));
    const old = new Date(Date.now() - 3 * 3600 * 1000);
    fs.utimesSync(stale, old, old);
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { upload_dir: dir, upload_rate_per_min: 3, upload_user_bytes_per_day: 20000, upload_expiry_hours: 1 } });
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const login = async (user) => (await (await fetch(`${gw.httpUrl}/api/login?user=${user}`)).json()).token;
  const upload = async (token, body) => {
    const res = await fetch(`${gw.httpUrl}/upload?token=${token}`, { method: 'POST', body, headers: { 'Content-Type': 'application/octet-stream' }, signal: AbortSignal.timeout(10000) });
    return { status: res.status, json: await res.json().catch(() => null) };
  };

  it('a user gets upload_rate_per_min uploads a minute, then 429; another user is not affected', async () => {
    const t = await login('rate1');
    const codes = [];
    for (let i = 0; i < 5; i++) codes.push((await upload(t, makePng(8, 8, i + 1))).status);
    assert.deepEqual(codes, [200, 200, 200, 429, 429]);
    assert.equal((await upload(await login('rate2'), makePng(8, 8))).status, 200);
  });

  it('the daily byte quota is enforced per user', async () => {
    const t = await login('bytes1');
    const big = makePng(50, 50); // ~7.6 kB of noise: two fit in 20000 bytes, not three
    assert.ok(big.length > 7000 && big.length < 10000, `picture is ${big.length} bytes`);
    assert.equal((await upload(t, big)).status, 200);
    assert.equal((await upload(t, big)).status, 200);
    const third = await upload(t, big);
    assert.equal(third.status, 429);
    assert.equal(third.json.error.code, 'quota_exceeded');
  });

  it('PNG magic followed by HTML is refused; a stored picture is served inert', async () => {
    const t = await login('html1');
    const fake = Buffer.concat([makePng(2, 2).subarray(0, 8), Buffer.from('<html><script>alert(document.cookie)</script></html>')]);
    const r = await upload(t, fake);
    assert.equal(r.status, 415);
    const tail = Buffer.concat([makePng(2, 2), Buffer.from('<html>')]);
    assert.equal((await upload(t, tail)).status, 415);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('.tmp-')), []);
    const ok = await upload(t, makePng(3, 3));
    assert.equal(ok.status, 200);
    const res = await fetch(ok.json.url.replace(/^http:\/\/[^/]+/, gw.httpUrl));
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-security-policy'), /default-src 'none'/);
    assert.match(res.headers.get('content-disposition'), /filename="[0-9a-f]{32}\.png"/);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
  });

  it('expired files are swept', async () => {
    await until('the stale picture is removed', 10000, async () => !fs.existsSync(stale), gw.logText);
  });
});
