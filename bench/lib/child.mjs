// A forked load process with a small request/answer helper over IPC.

import { fork } from 'node:child_process';

/**
 * Forks `script` with `cfg` as JSON in argv[2].
 * @param {string} script
 * @param {object} cfg
 * @param {{heapMiB?: number, execArgv?: string[]}} [opts]
 */
export function forkChild(script, cfg, opts = {}) {
  const execArgv = [...(opts.execArgv || [])];
  if (opts.heapMiB) execArgv.push(`--max-old-space-size=${opts.heapMiB}`);
  const proc = fork(script, [JSON.stringify(cfg)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  /** @type {Map<string, Array<(m: object) => void>>} */
  const waiters = new Map();
  let exited = null;
  proc.on('message', (m) => {
    const q = waiters.get(m.ev);
    if (q && q.length) q.shift()(m);
  });
  proc.on('exit', (code, signal) => {
    exited = { code, signal };
    for (const [ev, q] of waiters) {
      for (const w of q) w({ ev, error: `load process exited (${code ?? signal}) before answering` });
    }
    waiters.clear();
  });
  return {
    pid: proc.pid,
    get exited() { return exited; },
    /**
     * Sends `msg` and resolves with the next message whose `ev` is `ev`.
     * @param {object} msg
     * @param {string} ev
     */
    ask(msg, ev) {
      return new Promise((resolve, reject) => {
        if (exited) {
          reject(new Error(`load process ${proc.pid} already exited`));
          return;
        }
        if (!waiters.has(ev)) waiters.set(ev, []);
        waiters.get(ev).push((m) => (m.error ? reject(new Error(m.error)) : resolve(m)));
        proc.send(msg);
      });
    },
    kill() {
      if (!exited) proc.kill('SIGKILL');
    },
  };
}
