// Start a throw-away PostgreSQL 15 cluster for tests.
//
// The cluster lives in a temp dir owned by the `postgres` user because the
// server refuses to run as root. It listens on a free loopback port and on a
// Unix socket in its own directory, with trust authentication (tests only),
// and fsync off because durability across a machine crash is not what tests
// check (a crash of the server process is: commits are synchronous). stop()/start() keep the data directory so a test can restart the
// server in the middle of traffic; cleanup() stops it and removes everything.
// The postmaster runs as a direct child of this process (spawned with the postgres
// user's uid, never through pg_ctl, which would setsid() it out of the test's process
// group), so tests/lib/procs.mjs and the per-file runner can always stop it.
// kill() is a SIGKILL of the postmaster, for failure tests; start() after it recovers.
//
//   const pg = await startPostgres({ db: 'imgw' });
//   await pg.psql('select 1');                       // '1'
//   await pg.psql('select :'v'', { vars: { v: "it's" } });
//   await pg.stop(); await pg.start();   // or pg.kill() for a crash
//   await pg.cleanup();

import { execFile } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.mjs';
import { scaled, tail } from './bounded.mjs';
import { spawnTracked } from './procs.mjs';

const PG_BIN = process.env.IMGW_PG_BIN || '/usr/lib/postgresql/15/bin';
const READY_TIMEOUT_MS = 30_000;

/** Run a program; resolve { stdout, stderr }, reject with both in the message. */
function run(cmd, args, { input, env, timeout = 120_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, {
      env: env ?? process.env, timeout, maxBuffer: 256 * 1024 * 1024, encoding: 'utf8',
    }, (err, stdout, stderr) => {
      if (err) {
        err.message = `${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`;
        err.stdout = stdout;
        err.stderr = stderr;
        reject(err);
      } else {
        resolve({ stdout, stderr });
      }
    });
    if (input !== undefined) child.stdin.end(input);
    else child.stdin.end();
  });
}

const asPostgres = (bin, args, opts) =>
  run('runuser', ['-u', 'postgres', '--', `${PG_BIN}/${bin}`, ...args], opts);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Client environment without the caller's PG* variables leaking in. */
function cleanEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.PGCONNECT_TIMEOUT = '5';
  return env;
}

/**
 * Start a PostgreSQL 15 cluster and create database `db`.
 * @param {{ db?: string, settings?: Record<string,string|number> }} [opts]
 *   settings: extra postgresql.conf lines (e.g. { shared_buffers: '1GB' }).
 */
export async function startPostgres({ db = 'imgw', settings = {} } = {}) {
  const { uid, gid } = await pgIds();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-pg-'));
  const dataDir = path.join(root, 'data');
  const socketDir = path.join(root, 'sock');
  const logFile = path.join(root, 'postgres.log');
  await fs.mkdir(socketDir);
  await fs.chown(root, uid, gid);
  await fs.chown(socketDir, uid, gid);
  await fs.chmod(root, 0o755);

  await asPostgres('initdb', ['-D', dataDir, '-U', 'postgres', '-A', 'trust',
    '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']);
  const conf = {
    // fsync off is safe against a killed server (the page cache survives it); commits
    // stay synchronous so that a kill() loses nothing that was committed.
    fsync: 'off', full_page_writes: 'off',
    max_connections: 100, log_min_messages: 'warning', ...settings,
  };
  await fs.appendFile(path.join(dataDir, 'postgresql.conf'),
    '\n# imgw tests\n' + Object.entries(conf).map(([k, v]) => `${k} = '${v}'`).join('\n') + '\n');

  const port = await freePort();
  const host = '127.0.0.1';
  const env = cleanEnv();

  const base = ['-h', host, '-p', String(port), '-U', 'postgres'];

  async function waitReady(c) {
    const deadline = Date.now() + scaled(READY_TIMEOUT_MS);
    for (;;) {
      if (!c.alive()) throw new Error(`postgres on ${port} exited before it was ready\n${logTail()}`);
      try {
        await run(`${PG_BIN}/pg_isready`, [...base, '-d', 'postgres', '-t', '2'], { env });
        return;
      } catch (e) {
        if (Date.now() > deadline) {
          const log = await fs.readFile(logFile, 'utf8').catch(() => '');
          throw new Error(`postgres on ${port} not ready after ${scaled(READY_TIMEOUT_MS)} ms\n${tail(log)}`);
        }
        await sleep(50);
      }
    }
  }

  let child = null;

  const logTail = () => tail(readOr(logFile));

  async function start() {
    if (child) return;
    const log = fsSync.openSync(logFile, 'a');
    let c;
    try {
      c = spawnTracked(`${PG_BIN}/postgres`,
        ['-D', dataDir, '-p', String(port), '-k', socketDir, '-c', `listen_addresses=${host}`],
        { uid, gid, cwd: root, env: { ...env, HOME: root, IMGW_PG_DATA: dataDir }, stdio: ['ignore', log, log] }, `postgres :${port}`);
    } finally {
      fsSync.closeSync(log);
    }
    child = c;
    c.exited.then(() => { if (child === c) child = null; });
    try {
      await waitReady(c);
    } catch (e) {
      await stop();
      throw e;
    }
  }

  /** Fast shutdown (SIGINT: abort transactions, checkpoint, exit), bounded. */
  async function stop() {
    const c = child;
    if (!c) return;
    await c.stopWith('SIGINT', 60_000, logTail);
    if (child === c) child = null;
  }

  /** SIGKILL of the postmaster, as in a crash; its backends notice and exit. */
  async function kill() {
    const c = child;
    if (!c) return;
    await c.stopWith('SIGKILL', 5000, logTail);
    if (child === c) child = null;
    // A new postmaster refuses to start while old backends still hold the shared
    // memory segment; they exit on their own once they see the postmaster gone.
    const pidFile = path.join(dataDir, 'postmaster.pid');
    const deadline = Date.now() + scaled(10_000);
    while (Date.now() < deadline && backendsAlive(dataDir)) await sleep(25);
    await fs.rm(pidFile, { force: true });
  }

  async function cleanup() {
    try { await stop(); } finally { await fs.rm(root, { recursive: true, force: true }); }
  }

  /**
   * Run SQL through psql (stdin, ON_ERROR_STOP). Resolves psql's stdout with
   * one trailing newline removed. tuplesOnly (default) gives unaligned rows
   * with '|' between columns. vars are passed as psql -v variables, so values
   * can be quoted verbatim with :'name' (literal) or :"name" (identifier).
   * timeoutMs (default 120 s, 0 for none) kills psql when exceeded.
   * @param {string} sql
   * @param {{ tuplesOnly?: boolean, vars?: Record<string,string>, db?: string,
   *           fieldSep?: string, timeoutMs?: number }} [o]
   */
  async function psql(sql, { tuplesOnly = true, vars = {}, db: dbName = db, fieldSep, timeoutMs = 120_000 } = {}) {
    const args = [...base, '-d', dbName, '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'];
    if (tuplesOnly) args.push('-A', '-t');
    if (fieldSep !== undefined) args.push('-F', fieldSep);
    for (const [k, v] of Object.entries(vars)) args.push('-v', `${k}=${v}`);
    const { stdout } = await run('psql', args, { input: sql, env, timeout: timeoutMs });
    return stdout.endsWith('\n') ? stdout.slice(0, -1) : stdout;
  }

  try {
    await start();
    if (db !== 'postgres') {
      await psql(`create database "${db.replace(/"/g, '""')}"`, { db: 'postgres' });
    }
  } catch (e) {
    await cleanup().catch(() => {});
    throw e;
  }

  return {
    port, host, socketDir, db, user: 'postgres', dataDir, logFile,
    connString: `host=${host} port=${port} dbname=${db} user=postgres`,
    url: `postgresql://postgres@${host}:${port}/${encodeURIComponent(db)}`,
    get pid() { return child?.pid ?? null; },
    psql, stop, start, kill, cleanup,
  };
}

function readOr(file) {
  try { return fsSync.readFileSync(file, 'utf8'); } catch { return ''; }
}

/** True while a postgres process of this data directory (IMGW_PG_DATA in its environment) is alive. */
function backendsAlive(dataDir) {
  for (const pid of fsSync.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (/\) Z /.test(stat)) continue;
      const cmd = fsSync.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmd.startsWith('postgres') || cmd.includes('/postgres\0')) {
        const env = fsSync.readFileSync(`/proc/${pid}/environ`, 'utf8');
        if (env.includes(`IMGW_PG_DATA=${dataDir}`)) return true;
      }
    } catch { /* gone */ }
  }
  return false;
}

async function pgIds() {
  const passwd = await fs.readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user: apt-get install -y postgresql-15');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}
