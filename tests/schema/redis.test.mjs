// tests/lib/redis.mjs against a real redis-server.

import { test } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import { startRedis } from '../lib/redis.mjs';

/** Send one inline command over a raw socket: the server really listens there. */
function rawPing(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write('PING\r\n'));
    s.once('data', (d) => { s.end(); resolve(d.toString()); });
    s.once('error', reject);
  });
}

test('startRedis: PING, SET/GET, stop/start on the same port, cleanup', async () => {
  const r = await startRedis();
  try {
    assert.equal(await r.cli('PING'), 'PONG');
    assert.equal(await rawPing(r.port), '+PONG\r\n');
    assert.equal(r.url, `redis://127.0.0.1:${r.port}`);
    assert.equal(await r.cli('CONFIG', 'GET', 'save'), 'save\n');
    assert.equal(await r.cli('CONFIG', 'GET', 'appendonly'), 'appendonly\nno');
    assert.equal(await r.cli('SET', 'k', 'v w'), 'OK');
    assert.equal(await r.cli('GET', 'k'), 'v w');

    const pid = r.pid;
    await r.stop();
    assert.equal(r.pid, null);
    assert.throws(() => process.kill(pid, 0), /ESRCH/);
    await assert.rejects(rawPing(r.port), /ECONNREFUSED/);

    await r.start();
    assert.notEqual(r.pid, pid);
    assert.equal(await r.cli('PING'), 'PONG');
    // Cache-only Redis: a restart forgets everything.
    assert.equal(await r.cli('GET', 'k'), '');
  } finally {
    await r.cleanup();
  }
  await assert.rejects(fs.stat(r.dir), /ENOENT/);
});

test('startRedis({ persist: true }) keeps data across stop/start', async () => {
  const r = await startRedis({ persist: true });
  try {
    await r.cli('SET', 'k', 'kept');
    await r.stop();
    await r.start();
    assert.equal(await r.cli('GET', 'k'), 'kept');
  } finally {
    await r.cleanup();
  }
});

test('two servers run side by side on different ports', async () => {
  const [a, b] = await Promise.all([startRedis(), startRedis()]);
  try {
    assert.notEqual(a.port, b.port);
    await a.cli('SET', 'who', 'a');
    assert.equal(await b.cli('GET', 'who'), '');
  } finally {
    await Promise.all([a.cleanup(), b.cleanup()]);
  }
});
