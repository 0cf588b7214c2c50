// Start a throw-away PostgreSQL 15 cluster for tests.
//
// The cluster lives in a temp dir owned by the `postgres` user because the
// server refuses to run as root. It listens on a free loopback port and on a
// Unix socket in its own directory, with trust authentication (tests only),
// and fsync off because durability across a machine crash is not what tests
// check. stop()/start() keep the data directory so a test can restart the
// server in the middle of traffic; cleanup() stops it and removes everything.
//
//   const pg = await startPostgres({ db: 'imgw' });
//   await pg.psql('select 1');                       // '1'
//   await pg.psql('select :'v'', { vars: { v: "it's" } });
//   await pg.stop(); await pg.start();
//   await pg.cleanup();

import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports.mjs';

const PG_BIN = process.env.IMGW_PG_BIN || '/usr/lib/postgresql/15/bin';
const READY_TIMEOUT_MS = 30_000;

// Clusters still running when the process exits are stopped here, so a
// crashed test run does not leave postmasters behind.
const live = new Set();
process.on('exit', () => {
  for (const inst of live) {
    try {
      execFileSync('runuser', ['-u', 'postgres', '--', `${PG_BIN}/pg_ctl`,
        '-D', inst.dataDir, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore' });
    } catch { /* already gone */ }
  }
});

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
    fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off',
    max_connections: 100, log_min_messages: 'warning', ...settings,
  };
  await fs.appendFile(path.join(dataDir, 'postgresql.conf'),
    '\n# imgw tests\n' + Object.entries(conf).map(([k, v]) => `${k} = '${v}'`).join('\n') + '\n');

  const port = await freePort();
  const host = '127.0.0.1';
  const inst = { dataDir, running: false };
  const env = cleanEnv();

  const base = ['-h', host, '-p', String(port), '-U', 'postgres'];

  async function waitReady() {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      try {
        await run(`${PG_BIN}/pg_isready`, [...base, '-d', 'postgres', '-t', '2'], { env });
        return;
      } catch (e) {
        if (Date.now() > deadline) {
          const log = await fs.readFile(logFile, 'utf8').catch(() => '');
          throw new Error(`postgres on ${port} not ready after ${READY_TIMEOUT_MS} ms\n${log}`);
        }
        await sleep(50);
      }
    }
  }

  async function start() {
    if (inst.running) return;
    // pg_ctl without -w returns once the postmaster is forked; readiness is
    // then polled with pg_isready under our own bound.
    await asPostgres('pg_ctl', ['-D', dataDir, '-l', logFile, '-W',
      '-o', `-p ${port} -k ${socketDir} -c listen_addresses=${host}`, 'start']);
    inst.running = true;
    live.add(inst);
    await waitReady();
  }

  async function stop() {
    if (!inst.running) return;
    await asPostgres('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', '-t', '60', 'stop']);
    inst.running = false;
    live.delete(inst);
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
    psql, stop, start, cleanup,
  };
}

async function pgIds() {
  const passwd = await fs.readFile('/etc/passwd', 'utf8');
  const line = passwd.split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('no postgres user: apt-get install -y postgresql-15');
  const f = line.split(':');
  return { uid: Number(f[2]), gid: Number(f[3]) };
}
