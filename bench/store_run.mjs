// History writer benchmark: a private PostgreSQL 15 with the imgw schema, then the
// gateway's own writer (store.c: batched multi-row INSERTs on store_writers = 2 connections) and
// one INSERT per transaction, on the same database in the same run.
//
//   node bench/store_run.mjs [--messages 200000] [--single 20000] [--concurrent 4000]
//
// Needs build/bench/store_bench (cmake --build build). Prints a Markdown table.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startPostgres } from '../tests/lib/postgres.mjs';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const opts = { messages: 200000, single: 20000, concurrent: 4000 };
for (let i = 2; i < process.argv.length; i += 2) opts[process.argv[i].replace(/^--/, '')] = Number(process.argv[i + 1]);

const bin = path.join(root, 'build', 'bench', 'store_bench');
const gw = path.join(root, 'build', 'gateway', 'imgw');
// Production-like durability: fsync on, synchronous_commit on (the default).
const pg = await startPostgres({ db: 'imgw', settings: { fsync: 'on', synchronous_commit: 'on', shared_buffers: '1GB', max_wal_size: '4GB' } });
try {
  execFileSync(gw, ['migrate'], { env: { ...process.env, IMGW_PG_CONNINFO: pg.connString, IMGW_COMPONENT_SECRET: 'x', IMGW_DEV_MODE: 'yes' } });
  const parse = (line) => Object.fromEntries(line.trim().split(' ').slice(1).map((kv) => kv.split('=')));
  const writer = parse(execFileSync(bin, [pg.connString, String(opts.messages), 'writer', String(opts.concurrent)]).toString());
  const single = parse(execFileSync(bin, [pg.connString, String(opts.single), 'single']).toString());
  const rows = await pg.psql('SELECT count(*) FROM messages');
  const cpu = os.cpus()[0].model;
  console.log(`store benchmark, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, PostgreSQL 15 fsync on`);
  console.log(`command: node bench/store_run.mjs --messages ${opts.messages} --single ${opts.single} --concurrent ${opts.concurrent}\n`);
  console.log('| writer | messages | msgs/s | ack p50 ms | ack p99 ms |');
  console.log('|---|---|---|---|---|');
  console.log(`| imgw writer (batched, ${opts.concurrent} sends in flight) | ${writer.n} | ${writer.msgs_per_s} | ${writer.ack_p50_ms} | ${writer.ack_p99_ms} |`);
  console.log(`| one INSERT per transaction | ${single.n} | ${single.msgs_per_s} | ${single.ack_p50_ms} | ${single.ack_p99_ms} |`);
  console.log(`\nratio: ${(Number(writer.msgs_per_s) / Number(single.msgs_per_s)).toFixed(1)}× ; batches: ${writer.batches}; rows in table: ${rows.trim()}`);
} finally {
  await pg.cleanup();
}
