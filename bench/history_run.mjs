// History benchmark: a private PostgreSQL 15, the schema, a generated
// history (bench/gen_history.sql), EXPLAIN (ANALYZE) of the gateway's and the
// analysts' queries (bench/history_explain.sql) and pgbench latency of a
// 50-message page (bench/history_*.pgbench).
//
//   node bench/history_run.mjs [--rows 5000000] [--seconds 30] [--clients 2] [--rate 1000]
//        [--long 20000] [--lock FILE] [--hold]
//
// Generated conversations hold 1..39 messages, so a page there is the whole conversation.
// --long N adds one conversation of N messages spread over the 12 months (through the
// insert triggers), and history_page_long.pgbench pages back from random ids inside it:
// the deep page of a long conversation, 50 rows from a Merge Append over the partitions.
// --lock FILE runs each pgbench under `flock FILE` (a shared machine's bench lock), so
// the generation and EXPLAIN do not hold it.
// --use HOST:PORT:PID runs the EXPLAIN and pgbench parts against a cluster an earlier run
// generated and still holds (--hold; PID is its postmaster, for the CPU figures): no
// generation, nothing inserted; --skip NAME leaves out a part (explain, pgbench) or a
// pgbench script whose name contains NAME (e.g. insert).
//
// Each pgbench script runs twice: flat out (--clients connections), then
// paced at --rate transactions/s (pgbench -R; latency includes schedule lag;
// the insert script, 50 messages a transaction, at a tenth of that).
//
// --hold keeps the cluster running after the run and prints its connection
// string, for poking at plans by hand; Ctrl-C stops and removes it.
// Results go to stdout. Numbers depend on the machine: quote them with it.

import { execFile, execFileSync } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { machineBusySeconds, processTree } from './lib/procstat.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);

const opts = { rows: 5_000_000, seconds: 30, clients: 2, rate: 1000, long: 20000, lock: null, use: null, hold: false, skip: [] };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--rows') opts.rows = Number(argv[++i]);
  else if (a === '--seconds') opts.seconds = Number(argv[++i]);
  else if (a === '--clients') opts.clients = Number(argv[++i]);
  else if (a === '--rate') opts.rate = Number(argv[++i]);
  else if (a === '--long') opts.long = Number(argv[++i]);
  else if (a === '--lock') opts.lock = argv[++i];
  else if (a === '--use') opts.use = argv[++i];
  else if (a === '--hold') opts.hold = true;
  else if (a === '--skip') opts.skip.push(argv[++i]);
  else { console.error(`unknown argument ${a}`); process.exit(2); }
}

// Sizes for a 24 GiB machine; production would look much the same.
const settings = {
  shared_buffers: '4GB', effective_cache_size: '16GB', work_mem: '64MB',
  maintenance_work_mem: '1GB', max_wal_size: '8GB', random_page_cost: 1.1,
  jit: 'off',
};

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) { err.message += `\n${stderr}`; reject(err); } else resolve(stdout + stderr);
    });
  });
}

// utime + stime of a process, with children: + cutime + cstime (those it reaped).
function ticks(pid, children) {
  try {
    const st = fsSync.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11] + f[12] + (children ? f[13] + f[14] : 0)) / 100;
  } catch {
    return 0;
  }
}

function pct(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

// An existing cluster (--use): psql as its superuser, nothing to clean up.
function existing(spec) {
  const [host, port, pid] = spec.split(':');
  const psql = (sql, { tuplesOnly = true, timeoutMs = 120_000 } = {}) => new Promise((resolve, reject) => {
    const child = execFile('psql', ['-h', host, '-p', port, '-U', 'postgres', '-d', 'imgw', '-X', '-q',
      '-v', 'ON_ERROR_STOP=1', '-f', '-', ...(tuplesOnly ? ['-A', '-t'] : [])],
    { maxBuffer: 64 << 20, encoding: 'utf8', timeout: timeoutMs }, (err, out, e) => {
      if (err) { err.message += `\n${e}`; reject(err); } else resolve(out.replace(/\n$/, ''));
    });
    child.stdin.end(sql);
  });
  return { host, port: Number(port), pid: Number(pid), db: 'imgw', psql, cleanup: async () => {},
    connString: `host=${host} port=${port} dbname=imgw user=postgres` };
}

const pg = opts.use ? existing(opts.use) : await startPostgres({ db: 'imgw', settings });
process.on('SIGINT', async () => { await pg.cleanup(); process.exit(130); });
try {
  console.log(`# imgw history benchmark, ${new Date().toISOString()}`);
  console.log(`# ${os.cpus().length} x ${os.cpus()[0].model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ` +
    `${execFileSync('psql', ['--version'], { encoding: 'utf8' }).trim()}`);
  console.log(opts.use ? `# existing cluster ${opts.use}` : `# settings ${JSON.stringify(settings)}`);
  let t = Date.now();
  let longIds = [1, 1];
  if (opts.use) {
    longIds = (await pg.psql(`SELECT min(id), max(id) FROM messages
      WHERE conv = imgw_conv_key('longbuyer@shop.example', 'seller0@shop.example')`)).split('|').map(Number);
    console.log(`# messages: ${await pg.psql('SELECT count(*) FROM messages')}, long conversation ids ${longIds.join('..')}`);
  } else {
    execFileSync(path.join(root, 'schema/migrate.sh'), [pg.connString], { stdio: 'inherit' });

    const gen = await pg.psql(await fs.readFile(path.join(here, 'gen_history.sql'), 'utf8'),
      { vars: { rows: String(opts.rows) }, tuplesOnly: false, timeoutMs: 0 });
    console.log(`\n## generate ${opts.rows} rows: ${((Date.now() - t) / 1000).toFixed(1)} s\n${gen}`);
    console.log(await pg.psql(`SELECT pg_size_pretty(pg_total_relation_size('messages_p' || to_char(now() - interval '2 months', 'YYYY_MM'))) AS one_month,
      (SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'messages'::regclass) AS messages_total`,
    { tuplesOnly: false }));

    // One long conversation, through the triggers like any writer's: ids after the generated
    // ones, times spread evenly over the generated months.
    if (opts.long > 0) {
      t = Date.now();
      await pg.psql(`INSERT INTO messages (id, sender, recipient, body, kind, stanza_id, created_at)
        SELECT (SELECT max(id) FROM messages) + g,
               CASE WHEN g % 2 = 0 THEN 'longbuyer@shop.example' ELSE 'seller0@shop.example' END,
               CASE WHEN g % 2 = 0 THEN 'seller0@shop.example' ELSE 'longbuyer@shop.example' END,
               'long conversation message ' || g, 'text', 'long-' || g,
               now() - interval '360 days' + g * (interval '359 days' / ${opts.long})
        FROM generate_series(1, ${opts.long}) g;
        SELECT setval('message_id_seq', (SELECT max(id) FROM messages));
        ANALYZE messages;`, { timeoutMs: 0 });
      longIds = (await pg.psql(`SELECT min(id), max(id) FROM messages
        WHERE conv = imgw_conv_key('longbuyer@shop.example', 'seller0@shop.example')`)).split('|').map(Number);
      const parts = await pg.psql(`SELECT count(DISTINCT tableoid) FROM messages
        WHERE conv = imgw_conv_key('longbuyer@shop.example', 'seller0@shop.example')`);
      console.log(`\n## long conversation: ${opts.long} messages, ids ${longIds[0]}..${longIds[1]}, in ${parts} partitions (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    }
  }

  if (!opts.skip.includes('explain')) {
    t = Date.now();
    const out = await pg.psql(await fs.readFile(path.join(here, 'history_explain.sql'), 'utf8'),
      { tuplesOnly: false, timeoutMs: 0 });
    console.log(`\n## EXPLAIN (${((Date.now() - t) / 1000).toFixed(1)} s)\n${out}`);
  }

  if (!opts.skip.includes('pgbench')) {
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-pgbench-'));
    const scripts = (await fs.readdir(here)).filter((f) => f.startsWith('history_') && f.endsWith('.pgbench')).sort();
    for (const s of scripts) {
      // Inserts carry 50 messages each: pace them at a tenth of the rate.
      const paced = s.includes('insert') ? Math.max(1, Math.round(opts.rate / 10)) : opts.rate;
      for (const rate of [0, paced]) {
        const prefix = path.join(tmp, `${s.replace(/\.pgbench$/, '')}-${rate}`);
        const args = ['-h', pg.host, '-p', String(pg.port), '-U', 'postgres',
          '-n', '-M', s.includes('unnamed') ? 'extended' : 'prepared', '-c', String(opts.clients), '-j', String(opts.clients),
          '-T', String(opts.seconds), '-l', `--log-prefix=${prefix}`, '-f', path.join(here, s),
          '-D', `convs=${Math.floor(opts.rows / 20)}`, '-D', `rows=${opts.rows}`,
          '-D', `long_lo=${longIds[0]}`, '-D', `long_hi=${longIds[1]}`];
        if (rate) args.push('-R', String(rate));
        if (s.includes('long') && longIds[1] <= longIds[0]) continue;
        if (opts.skip.some((k) => s.includes(k))) continue;
        // CPU of PostgreSQL (with its reaped backends) and of the rest of the machine in
        // the window; pgbench is this process's child, so its CPU is in our cutime.
        const pgCpu = () => ticks(pg.pid, true) + processTree(pg.pid).slice(1).reduce((a, p) => a + ticks(p, false), 0);
        const w0 = [machineBusySeconds(), pgCpu(), ticks(process.pid, true) - ticks(process.pid, false)];
        const out = opts.lock ? await run('flock', [opts.lock, 'pgbench', ...args, pg.db]) : await run('pgbench', [...args, pg.db]);
        const w1 = [machineBusySeconds(), pgCpu(), ticks(process.pid, true) - ticks(process.pid, false)];
        const lat = [];
        for (const f of await fs.readdir(tmp)) {
          if (!f.startsWith(path.basename(prefix) + '.')) continue;
          for (const line of (await fs.readFile(path.join(tmp, f), 'utf8')).split('\n')) {
            const col = line.split(' ');
            if (col.length > 2) lat.push(Number(col[2]) / 1000);
          }
        }
        lat.sort((a, b) => a - b);
        const tps = /tps = ([\d.]+)/.exec(out)?.[1];
        console.log(`\n## pgbench ${s}: ${opts.clients} clients, ${rate ? `paced at ${rate}/s` : 'flat out'}, ` +
          `${opts.seconds} s, ${lat.length} transactions, ${tps} tps`);
        console.log(`latency ms: p50 ${pct(lat, 50).toFixed(3)}  p90 ${pct(lat, 90).toFixed(3)}  ` +
          `p99 ${pct(lat, 99).toFixed(3)}  p99.9 ${pct(lat, 99.9).toFixed(3)}  max ${lat[lat.length - 1].toFixed(3)}`);
        console.log(`CPU s in the window: PostgreSQL ${(w1[1] - w0[1]).toFixed(2)}, pgbench ${(w1[2] - w0[2]).toFixed(2)}, ` +
          `rest of the machine ${(w1[0] - w0[0] - (w1[1] - w0[1]) - (w1[2] - w0[2])).toFixed(2)}`);
      }
    }
    await fs.rm(tmp, { recursive: true, force: true });
  }

  if (opts.hold) {
    console.log(`\nholding: psql "${pg.connString}"  (Ctrl-C to stop)`);
    setInterval(() => {}, 1 << 30);  // a pending promise alone does not keep node alive
    await new Promise(() => {});
  }
} finally {
  if (!opts.hold) await pg.cleanup();
}
