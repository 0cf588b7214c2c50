// Finds (and kills) processes left behind by a test run, by a marker in their environment.
//
// Every process a test starts inherits the environment of the test runner, so a variable
// set there (IMGW_TEST_TAG for a whole scripts/test.sh run, IMGW_TEST_FILE for one test
// file) marks them all, including servers that left the process group (setsid), were
// re-parented to init, or were started through runuser or a shell.
//
//   node tests/lib/sweep.mjs IMGW_TEST_TAG=abc   # lists survivors, kills them, exits 1 if any
//
//   import { survivors, sweep } from './sweep.mjs';
//   const left = await sweep('IMGW_TEST_FILE=xyz', 3000);  // [{ pid, cmd }], now killed

import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Processes other than this one and its ancestors whose environment holds `marker`. */
export function survivors(marker) {
  const want = Buffer.from(`\0${marker}\0`);
  const mine = new Set();
  for (let pid = process.pid; pid > 1;) {
    mine.add(pid);
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      pid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      break;
    }
  }
  const found = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || mine.has(Number(name))) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const env = Buffer.concat([Buffer.from([0]), fs.readFileSync(`/proc/${name}/environ`), Buffer.from([0])]);
      if (env.includes(want)) {
        const cmd = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
        found.push({ pid: Number(name), cmd });
      }
    } catch {
      /* exited while we looked */
    }
  }
  return found;
}

/**
 * Waits up to `graceMs` for marked processes to go away by themselves (ones being killed
 * right now), then SIGKILLs and returns those that were still there.
 * @param {string} marker  NAME=value
 * @param {number} [graceMs=3000]
 * @returns {Promise<{ pid: number, cmd: string }[]>}
 */
export async function sweep(marker, graceMs = 3000) {
  const deadline = Date.now() + graceMs;
  let left = survivors(marker);
  while (left.length && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    left = survivors(marker);
  }
  for (const p of left) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  return left;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const marker = process.argv[2];
  if (!marker || !marker.includes('=')) {
    process.stderr.write('usage: node tests/lib/sweep.mjs NAME=value\n');
    process.exit(2);
  }
  const left = await sweep(marker);
  for (const p of left) process.stderr.write(`left running after the tests (killed now): pid ${p.pid}: ${p.cmd}\n`);
  process.exit(left.length ? 1 : 0);
}
