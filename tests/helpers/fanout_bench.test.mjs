// The fan-out bench (bench/fanout.mjs) and its bare push server (bench/barepush.c) keep
// working: a small run against imgw and barepush delivers every frame exactly once on
// every session in every scenario, with frames of the same size on both servers, and
// leaves nothing running. No timing is asserted.
import { describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { within } from '../lib/bounded.mjs';
import { GATEWAY_BIN } from '../lib/imgw.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
// build/gateway/imgw -> build/bench/barepush (the same build tree).
const BAREPUSH = path.resolve(path.dirname(GATEWAY_BIN), '..', 'bench', 'barepush');

describe('bench/fanout.mjs against imgw and barepush', () => {
  it('every frame arrives exactly once on every session, tabs and burst, on both servers', async () => {
    await fs.access(BAREPUSH).catch(() => assert.fail(`${BAREPUSH} is not built`));
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-fanout-test-'));
    const json = path.join(dir, 'rows.json');
    let out = '';
    const child = spawn(process.execPath, [
      'bench/fanout.mjs', '--sessions', '60', '--tabs', '4', '--tab-rates', '200,max',
      '--tab-messages', '300', '--duration', '1', '--repeat', '1', '--bursts', '2', '--receivers', '2',
      '--settle', '0', '--gateway', GATEWAY_BIN, '--barepush', BAREPUSH, '--json', json,
    ], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    try {
      const res = await within(exited, 120_000, 'bench/fanout.mjs', () => out);
      assert.deepEqual(res, { code: 0, signal: null }, out);
      const { rows } = JSON.parse(await fs.readFile(json, 'utf8'));
      // 2 tab rates x 2 servers + 2 bursts x 3 (imgw, bare, bare-all).
      assert.equal(rows.length, 10, out);
      for (const r of rows) {
        const what = `${r.scenario} ${r.kind} ${r.rate ?? ''} rep ${r.rep}`;
        assert.equal(r.frames, r.expected, `${what}: frames`);
        assert.equal(r.dups, 0, `${what}: duplicates`);
        assert.equal(r.short, 0, `${what}: sessions missing a frame`);
        assert.equal(r.over, 0, `${what}: sessions with too many`);
        assert.equal(r.misrouted, 0, `${what}: misrouted`);
        assert.equal(r.closes, 0, `${what}: sessions closed`);
      }
      const tabs = rows.filter((r) => r.scenario === 'tabs' && r.rate === 'max');
      assert.equal(tabs[0].expected, 300 * 4);
      // The bare server is fed frames shaped like imgw's msg frame: same size within a few bytes.
      const size = (kind) => rows.find((r) => r.scenario === 'burst' && r.kind === kind).bytesPerFrame;
      assert.ok(Math.abs(size('imgw') - size('bare')) <= 2, `frame sizes ${size('imgw')} / ${size('bare')}`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
