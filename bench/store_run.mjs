// History writer benchmark: a private PostgreSQL 15 with the imgw schema (fsync and
// synchronous_commit on), then, each on a fresh database of the same cluster, in the same
// run:
//   writer  the gateway's own writer (store.c: batched statements of up to --batch-max rows
//           (store_batch_max) on store_writers = 2 connections, --concurrent messages
//           waiting for their durable ack)
//   copy:K  plain `COPY messages FROM STDIN` in batches of --copy-batch rows, each its own
//           transaction, on K connections at once: the same table and triggers with no
//           answer per row (the floor for the writer)
//   rawcopy:K the same without the triggers (session_replication_role = replica): what the
//           rows and indexes of messages cost without de-duplication and conversation_state
//   single  one INSERT and commit per message, one connection
//
//   node bench/store_run.mjs [--messages 200000] [--single 20000] [--concurrent 4000]
//        [--batch-max 1000] [--copy-batch 500] [--state-rows 0] [--phases writer,copy:1,copy:2,single] [--repeat 1]
//
// --state-rows N fills conversation_state with N rows of other conversations before each
// phase (a deployment with history: the trigger's lookups run against a table that size).
//
// For each phase: messages/s, ack (or batch) latency, and the CPU seconds PostgreSQL (the
// postmaster, its backends and the ones that exited), the bench process and the rest of
// the machine used in its window, per message. Needs build/bench/store_bench (cmake
// --build build). IMGW_SCHEMA_DIR picks other migrations; IMGW_STORE_WRITERS the writer
// count. Prints a Markdown table.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { machineBusySeconds, processTree } from './lib/procstat.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const opts = { messages: 200000, single: 20000, concurrent: 4000, 'batch-max': 1000, 'copy-batch': 500, 'state-rows': 0, phases: 'writer,copy:1,copy:2,single', repeat: 1 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in opts)) throw new Error(`unknown option ${process.argv[i]}`);
  opts[k] = k === 'phases' ? process.argv[i + 1] : Number(process.argv[i + 1]);
}
const phases = opts.phases.split(',');
// A phase may name other migrations: writer@DIR migrates its database from DIR (A/B of a schema).
for (const p of phases) if (!/^(writer|single|copy:[1-8]|rawcopy:[1-8])(@.+)?$/.test(p)) throw new Error(`unknown phase ${p}`);

const bin = path.join(root, 'build', 'bench', 'store_bench');
const gw = path.join(root, 'build', 'gateway', 'imgw');
const HZ = 100;

// utime + stime, and with children: + cutime + cstime (backends the postmaster reaped).
function ticks(pid, children) {
  try {
    const rest = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = rest.slice(rest.lastIndexOf(')') + 2).split(' ').map(Number);
    return (f[11] + f[12] + (children ? f[13] + f[14] : 0)) / HZ;
  } catch {
    return 0;
  }
}
const pgCpu = (pg) => ticks(pg.pid, true) + processTree(pg.pid).slice(1).reduce((s, p) => s + ticks(p, false), 0);
// This process's children (store_bench) once they have exited and been reaped.
const benchCpu = () => {
  const f = fs.readFileSync('/proc/self/stat', 'utf8');
  const r = f.slice(f.lastIndexOf(')') + 2).split(' ').map(Number);
  return (r[13] + r[14]) / HZ;
};

// Production-like durability: fsync on, synchronous_commit on (the default).
const pg = await startPostgres({ db: 'imgw', settings: { fsync: 'on', synchronous_commit: 'on', shared_buffers: '1GB', max_wal_size: '4GB' } });
const results = [];
try {
  let n = 0;
  for (let r = 0; r < opts.repeat; r++) {
    for (const spec of phases) {
      const [phase, schemaDir] = spec.split('@');
      const db = `run${n++}`;
      await pg.psql(`CREATE DATABASE ${db}`, { db: 'postgres' });
      const conn = pg.connString.replace(/dbname=\S+/, `dbname=${db}`);
      execFileSync(gw, ['migrate'], { env: { ...process.env, ...(schemaDir ? { IMGW_SCHEMA_DIR: schemaDir } : {}), IMGW_PG_CONNINFO: conn, IMGW_COMPONENT_SECRET: 'x', IMGW_DEV_MODE: 'yes' } });
      if (opts['state-rows'] > 0) {
        await pg.psql(`INSERT INTO conversation_state (user_jid, peer_jid, conv, last_message_id, last_message_at,
            last_sender, last_kind, last_preview)
          SELECT v.u, v.p, imgw_conv_key(v.u, v.p), g, now(), v.u, 'text', 'earlier'
          FROM generate_series(1, ${Math.ceil(opts['state-rows'] / 2)}) g,
               LATERAL (SELECT 'old' || g || '@shop.bench' AS b, 'oldseller' || (g % 100) || '@shop.bench' AS s) x,
               LATERAL (VALUES (x.b, x.s), (x.s, x.b)) v (u, p);
          ANALYZE conversation_state;`, { db, timeoutMs: 0 });
      }
      await pg.psql('CHECKPOINT', { db });
      const args = phase === 'writer' ? [conn, String(opts.messages), 'writer', String(opts.concurrent), String(opts['batch-max'])]
        : phase === 'single' ? [conn, String(opts.single), 'single']
          : [conn, String(opts.messages), phase.split(':')[0], phase.split(':')[1], String(opts['copy-batch'])];
      const kids0 = processTree(pg.pid).length;
      const [pg0, b0, m0] = [pgCpu(pg), benchCpu(), machineBusySeconds()];
      const out = execFileSync(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] }).toString();
      // The bench's backends exit after it does: wait until the postmaster has reaped them
      // (their CPU then moves into its cutime/cstime), at most 5 s.
      for (let t = 0; t < 50 && processTree(pg.pid).length > kids0; t++) await new Promise((r) => setTimeout(r, 100));
      const [pg1, b1, m1] = [pgCpu(pg), benchCpu(), machineBusySeconds()];
      const kv = Object.fromEntries(out.trim().split(' ').slice(1).map((x) => x.split('=')));
      const rows = Number(await pg.psql('SELECT count(*) FROM messages', { db }));
      const msgs = Number(kv.n);
      results.push({
        phase, spec, ...kv, rows,
        pgUs: ((pg1 - pg0) / msgs) * 1e6, benchUs: ((b1 - b0) / msgs) * 1e6,
        restS: m1 - m0 - (pg1 - pg0) - (b1 - b0),
      });
      process.stderr.write(`${spec}: ${out}`);
      await pg.psql(`DROP DATABASE ${db}`, { db: 'postgres' });
    }
  }
} finally {
  await pg.cleanup();
}

const cpu = os.cpus()[0].model;
console.log(`store benchmark, ${new Date().toISOString()}, ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, PostgreSQL 15 fsync on, a fresh database per phase`);
console.log(`command: node bench/store_run.mjs ${process.argv.slice(2).join(' ')}\n`);
if (opts['state-rows'] > 0) console.log(`conversation_state held ${opts['state-rows']} rows of other conversations before each phase\n`);
console.log('| phase | messages | msgs/s | ack (writer, single) or batch (copy) p50 / p99 ms | batches | PostgreSQL CPU µs/msg | bench CPU µs/msg | rest of the machine, CPU s | seconds |');
console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of results) {
  const lat = r.phase === 'writer' || r.phase === 'single' ? `${r.ack_p50_ms} / ${r.ack_p99_ms}` : `${r.batch_p50_ms} / ${r.batch_p99_ms}`;
  const name = r.phase === 'writer' ? `imgw writer (batches ≤ ${opts['batch-max']}, ${opts.concurrent} in flight)`
    : r.phase === 'single' ? 'one INSERT per transaction'
      : `COPY${r.phase.startsWith('raw') ? ' without the triggers' : ''}, batches of ${r.batch}, ${r.connections} connection(s)`;
  const schema = r.spec.includes('@') ? `, schema ${r.spec.split('@')[1]}` : '';
  console.log(`| ${name}${schema} | ${r.n} (${r.rows} stored) | ${r.msgs_per_s} | ${lat} | ${r.batches ?? '-'} | ${r.pgUs.toFixed(1)} | ${r.benchUs.toFixed(1)} | ${r.restS.toFixed(2)} | ${r.seconds} |`);
}
const w = results.filter((r) => r.spec === 'writer').map((r) => Number(r.msgs_per_s));
for (const k of phases.filter((p) => /^(raw)?copy/.test(p))) {
  const c = results.filter((r) => r.spec === k).map((r) => Number(r.msgs_per_s));
  if (w.length && c.length) console.log(`\nwriter / ${k}: ${w.map((x, i) => (x / c[Math.min(i, c.length - 1)]).toFixed(2)).join(', ')}`);
}
