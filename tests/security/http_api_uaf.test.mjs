// Issue 9, item 2: a heap use-after-free in the HTTP API. A long poll replaced by a second
// poll, and /api/logout on another connection at the same moment: the replaced poll was
// answered from the writable callback after logout had freed its session (ASan: read in
// api_poll_answer of memory freed by api_free). Under ASan (CI's sanitizer pass) the old
// code fails at cleanup, which reads the gateway's log for sanitizer reports; in every
// build the answers must be the documented ones and the gateway must keep serving.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';

const DOMAIN = 'shop.test';

describe('HTTP API: requests and sessions have one owner', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw;

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: `gw.${DOMAIN}`, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody });
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.stop();
  });

  const api = async (ep, q) => {
    const res = await fetch(`${gw.httpUrl}/api/${ep}?${new URLSearchParams(q)}`, { signal: AbortSignal.timeout(30000) });
    return { status: res.status, json: await res.json() };
  };

  it('poll, a second poll and logout back to back, many times: no freed memory is read', async () => {
    for (let round = 0; round < 20; round++) {
      const login = await api('login', { user: `uaf${round}` });
      assert.equal(login.status, 200, JSON.stringify(login.json));
      const token = login.json.token;
      const first = api('poll', { token, timeout: 20 });
      // Let the first poll reach the gateway and wait there.
      await new Promise((r) => setTimeout(r, 50));
      const [second, out] = await Promise.all([api('poll', { token, timeout: 20 }), api('logout', { token })]);
      const replaced = await first;
      // The replaced poll ends empty (or closed, when logout won the race).
      assert.ok((replaced.status === 200 && replaced.json.frames.length === 0) || replaced.status === 410, JSON.stringify(replaced));
      assert.ok([200, 401, 410].includes(second.status), JSON.stringify(second));
      assert.equal(out.status, 200);
    }
    const h = await gw.health();
    assert.equal(h.status, 'ok');
    // The session is gone for good.
    assert.ok(!gw.logText().match(/ERROR: AddressSanitizer/), 'sanitizer report in the gateway log');
  });
});
