// Child processes of a test: spawned, tracked, and never left behind.
//
//   import { spawnTracked } from '../lib/procs.mjs';
//   const p = spawnTracked('redis-server', args, { stdio: [...] }, 'redis');
//   await p.exited;                 // { code, signal }, settles once, never rejects
//   p.alive()                       // false once it has exited
//   await p.stopWith('SIGTERM', 10_000, () => logText());  // signal, bounded wait, SIGKILL
//
// Every tracked process is killed with SIGKILL when this Node process exits, whatever the
// reason, and on SIGINT/SIGTERM/SIGHUP of this process (which then exits 128+n). Servers
// run as direct children in the test's process group (never daemonized, never setsid), so
// the per-file runner (tests/lib/run-file.mjs) can also kill the whole group; every child
// inherits IMGW_TEST_TAG, which scripts/test.sh looks for in /proc at the end.

import { spawn } from 'node:child_process';
import { within } from './bounded.mjs';

const live = new Set();

function killAll() {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

process.once('exit', killAll);
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(sig, () => {
    killAll();
    process.exit(128 + n);
  });
}

/**
 * Spawns a tracked child. Same arguments as child_process.spawn, plus a name used in
 * error messages. The returned ChildProcess has `exited` (a promise of { code, signal }),
 * `alive()` and `stopWith(signal, ms, log)`.
 * @param {string} cmd
 * @param {string[]} args
 * @param {import('node:child_process').SpawnOptions} opts
 * @param {string} name
 */
export function spawnTracked(cmd, args, opts, name) {
  if (opts?.detached) throw new Error('spawnTracked: detached children would escape the test process group');
  const child = spawn(cmd, args, opts);
  child.procName = name;
  let done = false;
  child.exited = new Promise((resolve) => {
    const finish = (code, signal, error) => {
      if (done) return;
      done = true;
      live.delete(child);
      resolve({ code, signal, error });
    };
    child.once('exit', (code, signal) => finish(code, signal));
    child.once('error', (err) => finish(null, null, err.message));
  });
  if (child.pid !== undefined) live.add(child);
  child.alive = () => !done;
  /**
   * Sends `signal`, waits up to ms for the exit, then SIGKILL and waits up to 5 s more.
   * Rejects (naming the process and its log tail) only if even SIGKILL did not end it.
   */
  child.stopWith = async (signal = 'SIGTERM', ms = 10_000, log) => {
    if (done) return child.exited;
    try { child.kill(signal); } catch { /* gone */ }
    try {
      return await within(child.exited, ms, `${name} exit after ${signal}`, log);
    } catch {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      return within(child.exited, 5000, `${name} exit after SIGKILL`, log);
    }
  };
  return child;
}
