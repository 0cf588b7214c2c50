// Runs one node:test file with bounds, and leaves nothing behind.
//
//   node tests/lib/run-file.mjs tests/gateway/gateway.test.mjs
//
// * Each test and hook is bounded by tests/lib/test.mjs (IMGW_TEST_TIMEOUT_MS, default
//   120 s, scaled by IMGW_TIME_SCALE), so a hang fails naming the test; --test-force-exit
//   then ends the file even though the hung step still holds a timer or a socket.
// * The whole file gets IMGW_FILE_TIMEOUT_MS (default 480 s, scaled); past it the file's
//   process group gets SIGTERM, then SIGKILL, and the run fails saying so.
// * The file runs in a process group of its own, with IMGW_TEST_FILE=<random> in the
//   environment of everything it starts. When it ends (passed, failed, timed out, or this
//   runner got SIGINT/SIGTERM/SIGHUP) the group is killed and any process still carrying
//   the marker is reported, killed, and fails the run: a test must stop what it starts.
// Exit code: the test run's, or 1 for a timeout or survivors, or 128+n on signal n.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import { sweep } from './sweep.mjs';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: node tests/lib/run-file.mjs FILE.test.mjs\n');
  process.exit(2);
}
const scale = Math.max(1, Number(process.env.IMGW_TIME_SCALE) || 1);
const fileMs = Math.round((Number(process.env.IMGW_FILE_TIMEOUT_MS) || 480_000) * scale);
const marker = `IMGW_TEST_FILE=${crypto.randomBytes(8).toString('hex')}`;
const name = path.basename(file);

function childEnv() {
  const env = { ...process.env, IMGW_TEST_FILE: marker.split('=')[1] };
  // Set by node:test in its test processes; a nested run would skip its files.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

const child = spawn(process.execPath,
  ['--test', '--test-concurrency=1', '--test-force-exit', file],
  {
    stdio: 'inherit',
    detached: true, // a process group of its own, killed as a whole below
    env: childEnv(),
  });

let failure = null;
let finishing = false;

function killGroup(sig) {
  try { process.kill(-child.pid, sig); } catch { /* group empty */ }
}

async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(fileTimer);
  // Look before killing the group: whatever is still there (after a short grace for
  // processes already on their way out) was left behind by the file.
  const left = await sweep(marker, 3000);
  killGroup('SIGKILL');
  for (const p of left) process.stderr.write(`run-file: ${name} left a process running (killed now): pid ${p.pid}: ${p.cmd}\n`);
  if (left.length && !failure) failure = `${left.length} process(es) left running`;
  if (failure) process.stderr.write(`run-file: ${name}: ${failure}\n`);
  process.exit(code !== 0 ? code : failure ? 1 : 0);
}

const fileTimer = setTimeout(() => {
  failure = `the file did not finish within ${fileMs} ms`;
  process.stderr.write(`run-file: ${name}: ${failure}; stopping its process group\n`);
  killGroup('SIGTERM');
  setTimeout(() => finish(1), 5000).unref();
}, fileMs);

child.on('exit', (code, signal) => finish(signal ? 1 : code ?? 1));
child.on('error', (err) => { failure = `could not start node: ${err.message}`; finish(1); });

for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.on(sig, () => {
    failure = `interrupted by ${sig}`;
    killGroup('SIGTERM');
    setTimeout(() => finish(128 + n), 2000).unref();
  });
}
