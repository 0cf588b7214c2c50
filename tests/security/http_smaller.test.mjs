// Issue 9, item 10 (the HTTP ones): Content-Length together with Transfer-Encoding: chunked
// was accepted (a smuggling risk behind a proxy); dev_mode's loopback check passed
// "127.0.0.1.nip.io" by prefix; and when the listener could not bind, imgw logged
// "listening" and kept running.
import { after, before, describe, it } from '../lib/test.mjs';
import { within } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GATEWAY_BIN, gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { spawnTracked } from '../lib/procs.mjs';
import { rawRequest } from '../lib/rawhttp.mjs';

/** Runs imgw with settings until it exits (bounded); returns { code, log }. */
async function runImgw(settings, ms = 8000) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-cfg-'));
  const conf = path.join(dir, 'imgw.conf');
  const base = { component_secret: 's', xmpp_port: 1, mode: 'component', log_level: 'info' };
  fs.writeFileSync(conf, Object.entries({ ...base, ...settings }).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  let log = '';
  const child = spawnTracked(GATEWAY_BIN, ['--config', conf], { stdio: ['ignore', 'pipe', 'pipe'] }, 'imgw (config check)');
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  try {
    const { code } = await within(child.exited, ms, 'imgw exits', () => log);
    return { code, log };
  } finally {
    await child.stopWith('SIGKILL', 2000);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('HTTP: smaller ones', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let gw;

  before(async () => {
    gw = await startImgw({});
  });

  after(async () => {
    await gw?.cleanup();
  });

  it('Content-Length with Transfer-Encoding: chunked is 400, on every path', async () => {
    for (const p of ['/api/login?user=x', '/sockjs/chat/000/abcdefgh/xhr_send', '/upload', '/health']) {
      const r = await rawRequest(gw.port, `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
      assert.equal(r.status, 400, p);
    }
  });

  it('dev_mode refuses a listen_host that only looks like loopback', async () => {
    for (const host of ['127.0.0.1.nip.io', 'localhost.evil.example', '127.example']) {
      const { code, log } = await runImgw({ dev_mode: 'yes', listen_host: host, listen_port: 0 });
      assert.notEqual(code, 0, `${host}: ${log}`);
      assert.match(log, /dev_mode/);
    }
  });

  it('a listener that cannot bind ends imgw with a non-zero status', async () => {
    const { code, log } = await runImgw({ dev_mode: 'yes', listen_host: '127.0.0.1', listen_port: gw.port });
    assert.notEqual(code, 0, log);
    assert.doesNotMatch(log, /listening on/);
  });
});
