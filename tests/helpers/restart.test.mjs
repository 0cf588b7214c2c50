// Tests of the test helpers themselves: every server restarts many times in a row within
// a bound, survives a crash (SIGKILL) and comes back, and the per-file runner turns a hang
// into a named failure and leaves no process behind.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { within } from '../lib/bounded.mjs';
import { survivors } from '../lib/sweep.mjs';
import { canConnect } from '../lib/ports.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const ROUNDS = 20;

/** True while pid is a live process (a zombie waiting for its reaper counts as gone). */
async function alive(pid) {
  try {
    const stat = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('server helpers restart every time', () => {
  it(`Prosody: ${ROUNDS} stop/start rounds, then a SIGKILL and a start`, async () => {
    const p = await startProsody({ components: [{ domain: 'gw.shop.test', secret: 's' }], logLevel: 'warn' });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const before = p.pid();
        await within(p.restart(), 30_000, `prosody restart ${i + 1}`, p.logText);
        assert.notEqual(p.pid(), before);
        assert.equal(await alive(before), false, 'the old Prosody is gone');
        assert.ok(await canConnect(p.componentPort), 'component port accepts');
      }
      process.kill(p.pid(), 'SIGKILL');
      await within(p.restart(), 30_000, 'prosody start after SIGKILL', p.logText);
      assert.ok(await canConnect(p.c2sPort));
    } finally {
      await p.cleanup();
    }
  });

  it(`PostgreSQL: ${ROUNDS} stop/start rounds, then a kill and a start`, async () => {
    const pg = await startPostgres();
    try {
      await pg.psql('create table t (n int)');
      for (let i = 0; i < ROUNDS; i++) {
        await within(pg.stop().then(() => pg.start()), 60_000, `postgres restart ${i + 1}`);
        await pg.psql(`insert into t values (${i})`);
      }
      await within(pg.kill(), 20_000, 'postgres kill');
      await within(pg.start(), 60_000, 'postgres start after SIGKILL');
      assert.equal(await pg.psql('select count(*) from t'), String(ROUNDS));
    } finally {
      await pg.cleanup();
    }
  });

  it(`Redis: ${ROUNDS} stop/start rounds, then a SIGKILL and a start`, async () => {
    const r = await startRedis();
    try {
      for (let i = 0; i < ROUNDS; i++) {
        const old = r.pid;
        await within(r.stop().then(() => r.start()), 20_000, `redis restart ${i + 1}`);
        assert.notEqual(r.pid, old);
        assert.equal(await r.cli('PING'), 'PONG');
      }
      await r.stop('SIGKILL');
      await r.start();
      assert.equal(await r.cli('PING'), 'PONG');
    } finally {
      await r.cleanup();
    }
  });

  describe('gateway', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
    let prosody;
    before(async () => {
      prosody = await startProsody({ components: [{ domain: 'gw.shop.test', secret: 's3cret' }], logLevel: 'warn' });
    });
    after(async () => { await prosody?.cleanup(); });

    it(`imgw: ${ROUNDS} stop/start rounds on the same port, half of them SIGKILL`, async () => {
      const gw = await startImgw({ prosody });
      try {
        for (let i = 0; i < ROUNDS; i++) {
          const t = await openWs(gw.wsUrl);
          assert.equal((await t.hello(`u${i}`)).op, 'welcome');
          const r = await within(gw.stop(i % 2 ? 'SIGKILL' : 'SIGTERM'), 20_000, `imgw stop ${i + 1}`, gw.logText);
          if (i % 2) assert.equal(r.signal, 'SIGKILL');
          else assert.equal(r.code, 0);
          await within(t.closed, 5000, 'client sees the close');
          await within(gw.start(), 30_000, `imgw start ${i + 1}`, gw.logText);
        }
        // Prosody restarting under a connected gateway: the link goes down and comes back.
        await prosody.restart();
        await gw.waitLink('up', 15_000);
      } finally {
        await gw.cleanup();
      }
    });
  });
});

function runFile(fixture, env = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['tests/lib/run-file.mjs', path.join('tests', 'helpers', 'fixtures', fixture)], {
      cwd: REPO, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => resolve({ code, out }));
  });
}

describe('the per-file runner', () => {
  it('fails a file that leaves a process running, and kills that process', async () => {
    const { code, out } = await within(runFile('leaves-orphan.mjs'), 30_000, 'run-file on leaves-orphan');
    assert.equal(code, 1, out);
    const pid = Number(/sleeper pid (\d+)/.exec(out)?.[1]);
    assert.ok(pid > 0, out);
    assert.match(out, new RegExp(`left a process running \\(killed now\\): pid ${pid}: sleep 1000`));
    assert.equal(await alive(pid), false);
  });

  it('turns a hanging test into a failure that names it', async () => {
    const { code, out } = await within(runFile('hangs.mjs', { IMGW_TEST_TIMEOUT_MS: '1000', IMGW_TIME_SCALE: '1' }),
      30_000, 'run-file on hangs');
    assert.notEqual(code, 0, out);
    assert.match(out, /not ok 1 - waits for something that never happens/);
    assert.match(out, /test timed out after 1000ms/);
  });

  it('leaves nothing of this file running but this file', () => {
    const me = process.env.IMGW_TEST_FILE;
    if (!me) return; // run directly, not under run-file.mjs
    const others = survivors(`IMGW_TEST_FILE=${me}`).filter((p) => p.pid !== process.pid);
    // The node:test runner that started this file is an ancestor, so it is excluded.
    assert.deepEqual(others, []);
  });
});
