// Start a throw-away redis-server for tests.
//
// The server runs in the foreground as our child process (no daemonize), on
// a free loopback port, with persistence off by default: a stop()/start()
// cycle then behaves like a real restart of a cache-only Redis and loses its
// data. Pass { persist: true } to keep an append-only file in the temp dir so
// data survives stop()/start().
//
//   const r = await startRedis();
//   await r.cli('PING');            // 'PONG'
//   await r.stop(); await r.start();
//   await r.cleanup();

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.mjs';
import { scaled, tail } from './bounded.mjs';
import { spawnTracked } from './procs.mjs';

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start redis-server.
 * @param {{ persist?: boolean, args?: string[] }} [opts]
 *   args: extra redis-server command-line arguments.
 */
export async function startRedis({ persist = false, args = [] } = {}) {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-redis-'));
  const port = await freePort();
  const logFile = path.join(dir, 'redis.log');
  let child = null;

  function cli(...cmd) {
    return new Promise((resolve, reject) => {
      execFile('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...cmd],
        { timeout: 10_000, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
        (err, stdout, stderr) => {
          if (err) {
            err.message = `redis-cli ${cmd.join(' ')}: ${err.message}\n${stderr}`;
            reject(err);
          } else {
            resolve(stdout.endsWith('\n') ? stdout.slice(0, -1) : stdout);
          }
        });
    });
  }

  const logTail = async () => tail(await fs.readFile(logFile, 'utf8').catch(() => ''));

  async function start() {
    if (child) return;
    const argv = ['--port', String(port), '--bind', '127.0.0.1', '--daemonize', 'no',
      '--dir', dir, '--logfile', logFile, '--save', '',
      '--appendonly', persist ? 'yes' : 'no', ...args];
    const log = await fs.open(logFile, 'a');
    const me = spawnTracked('redis-server', argv, { stdio: ['ignore', log.fd, log.fd] }, `redis :${port}`);
    await log.close();
    child = me;
    me.exited.then(() => { if (child === me) child = null; });

    const deadline = Date.now() + scaled(READY_TIMEOUT_MS);
    for (;;) {
      if (!me.alive()) break;
      try {
        if ((await cli('PING')) === 'PONG') return;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) break;
      await sleep(25);
    }
    const text = await logTail();
    await stop();
    throw new Error(`redis-server on ${port} not ready within ${scaled(READY_TIMEOUT_MS)} ms\n${text}`);
  }

  /** SIGTERM (or `signal`, e.g. SIGKILL for a crash) and a bounded wait for the exit. */
  async function stop(signal = 'SIGTERM') {
    const me = child;
    if (!me) return;
    await me.stopWith(signal, STOP_TIMEOUT_MS);
    if (child === me) child = null;
  }

  async function cleanup() {
    try { await stop(); } finally { await fs.rm(dir, { recursive: true, force: true }); }
  }

  try {
    await start();
  } catch (e) {
    await fs.rm(dir, { recursive: true, force: true });
    throw e;
  }

  return {
    port, host: '127.0.0.1', url: `redis://127.0.0.1:${port}`, dir,
    get pid() { return child?.pid ?? null; },
    cli, stop, start, cleanup,
  };
}
