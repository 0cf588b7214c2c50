#!/usr/bin/env node
// Runs the model test (driver.mjs) with random seeds for as long as asked, and prints the
// seed of every failure so that it can be run again alone.
//
//   node tests/model/run.mjs --minutes 30            random seeds for 30 minutes
//   node tests/model/run.mjs --seed 1234 [--ops 400] one seed (e.g. a failure's, again)
//   options: --ops N (operations per seed, default 300), --check retry,ts,eventsource
//            or --strict (all of them: issues owned elsewhere, see driver.mjs), --quiet
//
// Servers are started once and shared by the seeds (each seed has users of its own);
// after a failure they are started afresh. Exit code 1 if any seed failed.
// IMGW_GATEWAY_BIN picks the gateway binary (default build/gateway/imgw).
import { CHECKS, Mismatch, runSeed, startServers, stopServers } from './driver.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const flag = (name) => args.includes(`--${name}`);
const seedArg = opt('seed', null);
const minutes = Number(opt('minutes', seedArg === null ? 1 : 0));
const ops = Number(opt('ops', 300));
const checks = flag('strict') ? CHECKS : (opt('check', '') || '').split(',').filter(Boolean);
for (const c of checks) if (!CHECKS.includes(c)) throw new Error(`unknown check ${c} (${CHECKS.join(', ')})`);
const quiet = flag('quiet');

const log = (s) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const deadline = Date.now() + minutes * 60_000;
const failures = [];
const totals = { seeds: 0, ops: 0, tolerated: 0, counts: {} };
let servers = null;
let stopping = false;

process.on('SIGINT', () => { stopping = true; log('SIGINT: finishing the current seed'); });

let current = null;
// A client library that throws from an event handler (sockjs-client's eventsource receiver
// on a frame it cannot decode) ends the run: say which seed did it.
process.on('uncaughtException', (err) => {
  log(`seed ${current}: FAILED (thrown in a client library): ${err.stack ?? err}`);
  log(`  again: node tests/model/run.mjs --seed ${current} --ops ${ops}${checks.length ? ` --check ${checks.join(',')}` : ''}`);
  process.exit(1);
});

async function one(seed, tag) {
  current = seed;
  if (!servers) servers = await startServers();
  const t0 = Date.now();
  try {
    const r = await runSeed({ servers, seed, ops, checks, tag, log: quiet ? () => {} : log });
    totals.seeds++;
    totals.ops += r.ops;
    totals.tolerated += r.tolerated;
    for (const [k, v] of Object.entries(r.counts)) totals.counts[k] = (totals.counts[k] ?? 0) + v;
    log(`seed ${seed}: ok, ${r.ops} operations in ${((Date.now() - t0) / 1000).toFixed(1)} s` +
      (r.tolerated ? ` (${r.tolerated} repeats after SIGKILL)` : ''));
  } catch (err) {
    totals.seeds++;
    failures.push({ seed, message: err.message });
    log(`seed ${seed}: FAILED${err instanceof Mismatch ? '' : ' (error)'}: ${err.stack ?? err.message}`);
    log(`  again: node tests/model/run.mjs --seed ${seed} --ops ${ops}${checks.length ? ` --check ${checks.join(',')}` : ''}`);
    await stopServers(servers).catch((e) => log(`servers: ${e.message}`));
    servers = null;
  }
}

try {
  if (seedArg !== null) {
    await one(Number(seedArg) >>> 0, '');
  } else {
    let n = 0;
    while (!stopping && Date.now() < deadline) {
      const seed = (Math.random() * 2 ** 32) >>> 0;
      await one(seed, `r${n++}`);
    }
  }
} finally {
  if (servers) {
    await stopServers(servers).catch((e) => {
      failures.push({ seed: '-', message: e.message });
      log(`servers: ${e.message}`);
    });
  }
}
log(`done: ${totals.seeds} seed(s), ${totals.ops} operations, ${failures.length} failure(s)` +
  `, ${totals.tolerated} tolerated repeat(s) after SIGKILL; operations: ${JSON.stringify(totals.counts)}`);
for (const f of failures) log(`FAILED seed ${f.seed}: ${f.message.split('\n')[0]}`);
process.exit(failures.length ? 1 : 0);
