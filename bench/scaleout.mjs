#!/usr/bin/env node
// Scale-out (issue 12): several gateway processes sharing one Redis, one component domain
// bound by each of them (allowMultiple), web sessions spread over them, and messages to
// random users dealt round-robin over the component connections as Openfire does: a message
// reaches a gateway that does not hold the recipient (G-1 times out of G) and goes through
// the relay (Redis directory + pub/sub) to the gateway that does.
//
//   node bench/scaleout.mjs [--gateways 5] [--per-gateway 19800] [--rates 2000,5000]
//                           [--duration 10] [--no-single] ...   (see USAGE)
//
// Phases, in one run so the ratios compare like with like:
//   single  gateway 1 alone (Redis configured, so the relay's lookup runs but finds no other
//           gateway) with its sessions, at rate R/G per offered aggregate rate R: the same
//           rate per gateway as the scale-out phase;
//   multi   gateways 2..G started, their sessions opened, then rate R to users of every
//           gateway.
// The synthetic XEP-0114 server (bench/lib/component-server.mjs) runs in this process; load
// processes (bench/lib/receiver-proc.mjs, each on its own 127.0.20.x address) hold the
// sessions and count what arrives. Progress goes to stderr, the Markdown report to stdout.

import fs from 'node:fs/promises';
import fsSync from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { forkChild } from './lib/child.mjs';
import { startGateway } from './lib/gateway.mjs';
import { startComponentServer } from './lib/component-server.mjs';
import { cpuSeconds, cpuSecondsOf, cpuSplit, machineBusySeconds, machineInfo, rssKiB } from './lib/procstat.mjs';
import { fmt, mergeCounts, ratio, summarize } from './lib/stats.mjs';
import { startRedis } from '../tests/lib/redis.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

const USAGE = `usage: node bench/scaleout.mjs [options]
  --gateways G       gateway processes (default 5)
  --per-gateway N    web sessions per gateway (default 19800; at most ~19,870 fit under the
                     20,000 open-file limit, the gateway keeps 128 descriptors)
  --per-proc K       web sessions per load process (default 9900, at most 15000)
  --concurrency C    session opens in flight per load process (default 100)
  --rates R,...      aggregate offered msg/s of the measured windows (default 2000,5000);
                     the single-gateway phase offers R/G each
  --duration S       seconds per window (default 10)
  --settle S         wait after the last open before idle RSS (default 5)
  --no-single        skip the single-gateway phase
  --quiet-wait S     before each window wait up to S s for the rest of the machine to use
                     less than 0.15 of a core (default 0)
  --attach CMD       during each window run CMD through sh ({gw} = PID of gateway 2, or 1 in
                     the single phase; {gws} = PIDs of the window's gateways, space-separated;
                     {redis} = Redis' PID; {rate}, {phase}); it gets SIGINT at the end
  --gateway PATH     gateway binary (default build/gateway/imgw)
  --json FILE        also write the raw results`;

const { values: opt } = parseArgs({
  options: {
    gateways: { type: 'string', default: '5' },
    'per-gateway': { type: 'string', default: '19800' },
    'per-proc': { type: 'string', default: '9900' },
    concurrency: { type: 'string', default: '100' },
    rates: { type: 'string', default: '2000,5000' },
    duration: { type: 'string', default: '10' },
    settle: { type: 'string', default: '5' },
    'no-single': { type: 'boolean', default: false },
    'quiet-wait': { type: 'string', default: '0' },
    attach: { type: 'string' },
    gateway: { type: 'string', default: path.join(repo, 'build/gateway/imgw') },
    json: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}
const G = Number(opt.gateways);
const PER_GW = Number(opt['per-gateway']);
const PER_PROC = Number(opt['per-proc']);
const CONC = Number(opt.concurrency);
const RATES = opt.rates.split(',').map(Number);
const S = Number(opt.duration);
const SETTLE = Number(opt.settle);
const QUIET = Number(opt['quiet-wait']);
if (!(G >= 1 && G <= 50) || !(PER_GW >= 1) || !(PER_PROC >= 1 && PER_PROC <= 15000) ||
    !RATES.every((r) => r > 0) || !(S > 0) || !(CONC >= 1)) {
  console.error(USAGE);
  process.exit(2);
}
const DOMAIN = 'bench.localhost';
const GW_DOMAIN = `gw.${DOMAIN}`;
const SECRET = 'scaleout-secret';
const log = (...a) => console.error(`[scaleout ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now();

/** Everything started, so that any exit path stops it. */
const live = { gateways: [], receivers: [], redis: null, server: null, dir: null };

async function stopAll() {
  await Promise.all(live.receivers.map((r) => r.ask({ cmd: 'close' }, 'closed').catch(() => r.kill())));
  for (const r of live.receivers) r.kill();
  await Promise.all(live.gateways.map((g) => g.stop().catch(() => {})));
  if (live.server) live.server.close();
  if (live.redis) await live.redis.cleanup().catch(() => {});
  if (live.dir) await fs.rm(live.dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: stopping`);
    await stopAll();
    process.exit(130);
  });
}

/**
 * Every second, each gateway's and Redis' CPU seconds so far: a gateway busy outside the
 * measured windows (a timer over all its users, say) shows up here with its time.
 */
const timeline = [];
const windows = [];
let t0Run = Date.now();
function sampleCpu() {
  timeline.push({ t: Date.now() - t0Run, gw: live.gateways.map((g) => cpuSeconds(g.pid)),
    redis: live.redis ? cpuSeconds(live.redis.pid) : NaN });
}

/** Counters from a gateway's /metrics, by name (NaN when unreadable). */
async function metrics(gw, names) {
  const out = {};
  let text = '';
  try {
    text = await (await fetch(`http://127.0.0.1:${gw.listenPort}/metrics`)).text();
  } catch { /* NaN below */ }
  for (const n of names) {
    const m = new RegExp(`^${n} (\\d+)$`, 'm').exec(text);
    out[n] = m ? Number(m[1]) : NaN;
  }
  return out;
}
const METRICS = ['imgw_delivered_total', 'imgw_frames_out_total', 'imgw_dropped_no_session_total',
  'imgw_relay_forwarded_total', 'imgw_relay_received_total', 'imgw_relay_refused_total',
  'imgw_relay_errors_total', 'imgw_sessions'];

/** Redis INFO as {section key: value}; commandstats as {cmd: {calls, usec}}. */
async function redisInfo() {
  const text = await live.redis.cli('INFO', 'all');
  const kv = {};
  const cmds = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m) cmds[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
    else {
      const i = line.indexOf(':');
      if (i > 0) kv[line.slice(0, i)] = line.slice(i + 1);
    }
  }
  return { kv, cmds };
}

/** "Max open files" soft limit of a process, from /proc/PID/limits. */
function openFileLimit(pid) {
  try {
    const m = /^Max open files\s+(\d+)\s+(\d+)/m.exec(fsSync.readFileSync(`/proc/${pid}/limits`, 'utf8'));
    return m ? `${m[1]}/${m[2]}` : '?';
  } catch {
    return '?';
  }
}

async function waitForQuiet(ownPids) {
  const t0 = Date.now();
  for (;;) {
    const b0 = machineBusySeconds();
    const o0 = cpuSecondsOf(ownPids);
    await sleep(1000);
    const cores = (machineBusySeconds() - b0) - (cpuSecondsOf(ownPids) - o0);
    if (cores < 0.15 || (Date.now() - t0) / 1000 >= QUIET) return cores;
  }
}

async function startOneGateway(i, dir, port, redis) {
  const gw = await startGateway({
    binary: opt.gateway, dir: path.join(dir, `gw${i}`), xmppPort: port, xmppDomain: DOMAIN,
    componentDomain: GW_DOMAIN, componentSecret: SECRET,
    extra: {
      allow_multiple: 'yes', node_id: String(i), redis_host: '127.0.0.1', redis_port: String(redis.port),
      log_level: 'warning',
    },
  });
  gw.startedAt = Date.now();
  live.gateways.push(gw);
  return gw;
}

/** Opens gateway gi's sessions (users gi*PER_GW .. +PER_GW) from new load processes. */
function receiversFor(gi, gw) {
  const out = [];
  for (let first = 0, k = 0; first < PER_GW; first += PER_PROC, k++) {
    const count = Math.min(PER_PROC, PER_GW - first);
    const r = forkChild(path.join(here, 'lib/receiver-proc.mjs'), {
      kind: 'imgw', url: gw.url, first: gi * PER_GW + first, count, prefix: 'u', domain: DOMAIN,
      password: 'x', localAddress: `127.0.20.${gi * 10 + k + 1}`, concurrency: CONC, openTimeoutMs: 120000,
    }, { heapMiB: 3072 });
    live.receivers.push(r);
    out.push(r);
  }
  return out;
}

/** Opens sessions on the given gateways at once; returns sessions up, failures and seconds. */
async function openSessions(gis) {
  const rs = gis.flatMap((gi) => receiversFor(gi, live.gateways[gi]));
  const pids = gis.map((gi) => live.gateways[gi].pid);
  const c0 = cpuSecondsOf(pids);
  const t0 = Date.now();
  const opened = await Promise.all(rs.map((r) => r.ask({ cmd: 'open' }, 'opened')));
  const secs = (Date.now() - t0) / 1000;
  return {
    gatewayCpu: cpuSecondsOf(pids) - c0,
    up: opened.reduce((s, o) => s + o.ok, 0),
    failed: opened.reduce((s, o) => s + o.failed, 0),
    failures: mergeCounts(opened.map((o) => o.failures)),
    seconds: secs,
    limits: rs.map((r) => openFileLimit(r.pid)),
  };
}

/**
 * Writes `rate` msg/s for `seconds` to random users in [lo, hi), dealt round-robin over the
 * component connections, in chunks every millisecond; stops writing while a connection's
 * output buffer holds more than 8 MiB (the gateway not reading) rather than buffer without bound.
 */
function blast(run, rate, seconds, lo, hi) {
  const server = live.server;
  return new Promise((resolve) => {
    const t0 = performance.now();
    const total = Math.round(rate * seconds);
    let sent = 0;
    let stalledMs = 0;
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate));
      if (server.maxBuffered() > 8 * 1024 * 1024) {
        stalledMs++;
      } else if (sent < due) {
        const ts = nowMs().toFixed(3);
        const batch = [];
        for (; sent < due; sent++) {
          const target = lo + Math.floor(Math.random() * (hi - lo));
          batch.push(`<message from='app0@${DOMAIN}/r' to='u${target}@${GW_DOMAIN}' type='chat' id='${run}.${sent}'>` +
            `<body>bench ${run} 0 ${sent} ${target} ${ts}</body></message>`);
        }
        server.deal(batch);
      }
      if (sent >= total) {
        resolve({ sent, seconds: (performance.now() - t0) / 1000, stalledMs });
        return;
      }
      setTimeout(tick, 1);
    };
    tick();
  });
}

/** Waits until the receivers saw `sent` unique messages or nothing new came for 2 s (≤ 60 s). */
async function drain(sent) {
  const t0 = Date.now();
  let got = -1;
  for (let last = -2, quiet = Date.now(); ;) {
    const counts = await Promise.all(live.receivers.map((r) => r.ask({ cmd: 'count' }, 'count')));
    got = counts.reduce((s, c) => s + c.unique, 0);
    if (got >= sent) return got;
    if (got !== last) { last = got; quiet = Date.now(); }
    if (Date.now() - quiet > 2000 || Date.now() - t0 > 60000) return got;
    await sleep(20);
  }
}

function startAttached(phase, rate, ngw) {
  if (!opt.attach) return null;
  const gws = live.gateways.slice(0, ngw);
  const cmd = opt.attach.replaceAll('{gw}', String(gws[Math.min(1, ngw - 1)].pid))
    .replaceAll('{gws}', gws.map((g) => g.pid).join(' '))
    .replaceAll('{redis}', String(live.redis.pid)).replaceAll('{rate}', String(rate))
    .replaceAll('{phase}', phase);
  log(`attaching: ${cmd}`);
  const child = spawn('sh', ['-c', `exec ${cmd}`], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  return { child, exited: new Promise((r) => child.on('exit', r)) };
}

async function stopAttached(a) {
  if (!a) return;
  try { process.kill(-a.child.pid, 'SIGINT'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(-a.child.pid, 'SIGKILL'); } catch { /* gone */ } }, 30000);
  await a.exited;
  clearTimeout(t);
}

/** One measured window: `rate` msg/s to users of gateways [0, ngw), dealt over every link. */
async function measure(phase, run, rate, ngw) {
  const gws = live.gateways.slice(0, ngw);
  const gwPids = gws.map((g) => g.pid);
  const others = [live.redis.pid, process.pid, ...live.receivers.map((r) => r.pid)];
  let quiet = null;
  if (QUIET > 0) quiet = await waitForQuiet([...gwPids, ...others]);
  await Promise.all(live.receivers.map((r) => r.ask({ cmd: 'reset', run, start: nowMs() }, 'reset')));
  const m0 = await Promise.all(gws.map((g) => metrics(g, METRICS)));
  const i0 = await redisInfo();
  const split0 = gwPids.map((p) => cpuSplit(p));
  const red0 = cpuSeconds(live.redis.pid);
  const srv0 = cpuSeconds(process.pid);
  const rec0 = cpuSecondsOf(live.receivers.map((r) => r.pid));
  const b0 = machineBusySeconds();
  const w0 = Date.now();
  windows.push({ from: w0 - t0Run, to: NaN });
  const a = startAttached(phase, rate, ngw);
  log(`${phase}: offering ${rate} msg/s for ${S} s to the users of ${ngw} gateway(s) over ${live.server.links.length} link(s)`);
  const done = await blast(run, rate, S, 0, ngw * PER_GW);
  await drain(done.sent);
  const win = (Date.now() - w0) / 1000;
  windows[windows.length - 1].to = Date.now() - t0Run;
  // CPU is read before the attached tool stops: a profiler may take a while to write.
  const split = gwPids.map((p, i) => {
    const s = cpuSplit(p);
    return { user: s.user - split0[i].user, system: s.system - split0[i].system };
  });
  const redisCpu = cpuSeconds(live.redis.pid) - red0;
  const serverCpu = cpuSeconds(process.pid) - srv0;
  const recCpu = cpuSecondsOf(live.receivers.map((r) => r.pid)) - rec0;
  const gwCpu = split.reduce((s, x) => s + x.user + x.system, 0);
  const rest = machineBusySeconds() - b0 - gwCpu - redisCpu - serverCpu - recCpu;
  await stopAttached(a);
  const i1 = await redisInfo();
  const m1 = await Promise.all(gws.map((g) => metrics(g, METRICS)));
  const stats = await Promise.all(live.receivers.map((r) => r.ask({ cmd: 'collect' }, 'stats')));
  const delivered = stats.reduce((s, x) => s + x.unique, 0);
  const cmds = {};
  for (const [k, v] of Object.entries(i1.cmds)) {
    const before = i0.cmds[k] || { calls: 0, usec: 0 };
    // The bench's own INFO calls are not the gateways' work.
    if (k !== 'info' && v.calls > before.calls) cmds[k] = { calls: v.calls - before.calls, usec: v.usec - before.usec };
  }
  const dm = (name) => m1.map((m, i) => m[name] - m0[i][name]);
  const row = {
    phase, rate, ngw, links: live.server.links.length, sent: done.sent, sendSeconds: done.seconds,
    stalledMs: done.stalledMs, delivered, win, quiet,
    dups: stats.reduce((s, x) => s + x.dups, 0),
    misrouted: stats.reduce((s, x) => s + x.misrouted, 0),
    foreign: stats.reduce((s, x) => s + x.foreign, 0),
    upAfter: stats.reduce((s, x) => s + x.up, 0),
    drops: mergeCounts(stats.map((s) => s.dropsAfterOpen)),
    errors: mergeCounts(stats.map((s) => s.errorsAfterOpen)),
    loopDelayMaxMs: Math.max(...stats.map((s) => s.loopDelayMs.max)),
    lat: summarize(stats.map((s) => s.lat)),
    afterGw: summarize(stats.map((s) => s.afterGw)),
    cpu: { gw: split, gwTotal: gwCpu, redis: redisCpu, server: serverCpu, receivers: recCpu, rest },
    metrics: Object.fromEntries(METRICS.map((n) => [n, dm(n)])),
    redisCmds: cmds,
  };
  log(`${phase}: delivered ${delivered}/${done.sent} in ${fmt(win, 1)} s, p99 ${fmt(row.lat.p99, 1)} ms, ` +
    `gateways ${fmt(gwCpu, 2)} CPU s, Redis ${fmt(redisCpu, 2)}, rest of machine ${fmt(rest, 2)}`);
  return row;
}

/** A short unmeasured warm-up, so first-use costs (scripts, allocations) stay out of the figures. */
async function warmup(ngw) {
  const run = `w${ngw}`;
  await Promise.all(live.receivers.map((r) => r.ask({ cmd: 'reset', run }, 'reset')));
  const done = await blast(run, 500, 1, 0, ngw * PER_GW);
  const got = await drain(done.sent);
  if (got < done.sent) log(`warm-up: ${got}/${done.sent} arrived`);
}

function memorySnapshot(gis) {
  return gis.map((i) => rssKiB(live.gateways[i].pid));
}

async function main() {
  const t0 = new Date();
  t0Run = t0.getTime();
  const sampler = setInterval(sampleCpu, 1000);
  sampler.unref();
  const upAt = [];
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-scaleout-'));
  live.dir = dir;
  live.redis = await startRedis();
  live.server = await startComponentServer({ domain: GW_DOMAIN, secret: SECRET });
  const res = { started: t0.toISOString(), argv: process.argv.slice(2), machine: machineInfo(), rows: [] };
  const redisMem = async () => {
    const { kv } = await redisInfo();
    return { rss: rssKiB(live.redis.pid), used: Number(kv.used_memory) / 1024 };
  };
  res.redisBefore = await redisMem();

  // Phase single: gateway 1 (node 1) alone.
  await startOneGateway(1, dir, live.server.port, live.redis);
  if (!(await live.server.waitLinks(1, 15000))) throw new Error('gateway 1 did not bind');
  await sleep(500);
  const rss0 = [rssKiB(live.gateways[0].pid)];
  log(`opening ${PER_GW} sessions on gateway 1`);
  res.open1 = await openSessions([0]);
  log(`gateway 1: ${res.open1.up}/${PER_GW} up in ${fmt(res.open1.seconds, 1)} s`);
  upAt[0] = Date.now() - t0Run;
  if (res.open1.up !== PER_GW) throw new Error(`gateway 1: only ${res.open1.up} sessions up: ${JSON.stringify(res.open1.failures)}`);
  await sleep(SETTLE * 1000);
  res.redisAfter1 = await redisMem();
  res.rss1 = { before: rss0, idle: memorySnapshot([0]) };
  if (!opt['no-single']) {
    await warmup(1);
    for (const [k, rate] of RATES.entries()) res.rows.push(await measure('single', `a${k}`, rate / G, 1));
  }

  // Phase multi: gateways 2..G join.
  if (G > 1) {
    for (let i = 2; i <= G; i++) await startOneGateway(i, dir, live.server.port, live.redis);
    if (!(await live.server.waitLinks(G, 20000))) throw new Error(`only ${live.server.links.length} of ${G} links bound`);
    await sleep(500);
    const rest = Array.from({ length: G - 1 }, (_, i) => i + 1);
    const before = memorySnapshot(rest);
    log(`opening ${PER_GW * (G - 1)} sessions on gateways 2..${G}`);
    res.openRest = await openSessions(rest);
    log(`gateways 2..${G}: ${res.openRest.up}/${PER_GW * (G - 1)} up in ${fmt(res.openRest.seconds, 1)} s`);
    for (const i of rest) upAt[i] = Date.now() - t0Run;
    if (res.openRest.up !== PER_GW * (G - 1)) {
      throw new Error(`only ${res.openRest.up} sessions up: ${JSON.stringify(res.openRest.failures)}`);
    }
    await sleep(SETTLE * 1000);
    res.rssRest = { before, idle: memorySnapshot(rest) };
  }
  res.redisAfterAll = await redisMem();
  res.gatewayIdleRss = memorySnapshot(live.gateways.map((_, i) => i));
  res.receiverRss = live.receivers.map((r) => rssKiB(r.pid));
  res.gatewayLimits = live.gateways.map((g) => openFileLimit(g.pid));
  if (G > 1) {
    await warmup(G);
    for (const [k, rate] of RATES.entries()) res.rows.push(await measure('multi', `b${k}`, rate, G));
  }
  res.finished = new Date().toISOString();
  clearInterval(sampler);
  res.timeline = timeline;
  res.windows = windows;
  res.gatewayStartMs = live.gateways.map((g) => g.startedAt - t0Run);
  res.upAtMs = upAt;
  report(res);
  if (opt.json) await fs.writeFile(opt.json, JSON.stringify(res, null, 1));
}

function report(res) {
  const m = res.machine;
  const total = PER_GW * G;
  const p = (...a) => console.log(...a);
  p(`### Scale-out run of ${res.started.slice(0, 19)}Z\n`);
  p(`Command: \`node bench/scaleout.mjs ${res.argv.join(' ')}\`; ${m.nproc} CPUs (${m.cpu}), ${m.memGiB} GiB, ${m.kernel}, Node ${m.node}. ` +
    `${G} gateway(s) × ${fmt(PER_GW)} sessions = ${fmt(total)}; ${live.receivers.length} load processes ` +
    `(open-file limits ${[...new Set(res.open1.limits.concat(res.openRest?.limits || []))].join(', ')}; gateways ${[...new Set(res.gatewayLimits)].join(', ')}); ` +
    `one Redis, no PostgreSQL (the relay does not need it); synthetic XEP-0114 server dealing round-robin.\n`);
  const perSess = (after, before, n) => after.map((a, i) => (a - before[i]) / n);
  const ps1 = perSess(res.rss1.idle, res.rss1.before, PER_GW);
  const psR = res.rssRest ? perSess(res.rssRest.idle, res.rssRest.before, PER_GW) : [];
  const all = ps1.concat(psR);
  const gwRssSum = res.gatewayIdleRss.reduce((s, v) => s + v, 0);
  p('| memory and opening | value |');
  p('|---|---:|');
  p(`| RSS per idle session, per gateway (KiB) | ${all.map((v) => fmt(v, 2)).join(' / ')} |`);
  p(`| RSS of all gateways, idle (MiB) | ${fmt(gwRssSum / 1024, 1)} |`);
  p(`| Redis RSS / used_memory before sessions (MiB) | ${fmt(res.redisBefore.rss / 1024, 1)} / ${fmt(res.redisBefore.used / 1024, 1)} |`);
  p(`| Redis RSS / used_memory with all sessions (MiB) | ${fmt(res.redisAfterAll.rss / 1024, 1)} / ${fmt(res.redisAfterAll.used / 1024, 1)} |`);
  p(`| Redis used_memory per session (bytes) | ${fmt(((res.redisAfterAll.used - res.redisBefore.used) * 1024) / total, 0)} |`);
  const gwBefore = res.rss1.before.concat(res.rssRest ? res.rssRest.before : []).reduce((s, v) => s + v, 0);
  p(`| gateways + Redis RSS per session, total (KiB) | ${fmt((gwRssSum - gwBefore + res.redisAfterAll.rss - res.redisBefore.rss) / total, 2)} |`);
  p(`| sessions opened: gateway 1 alone | ${fmt(res.open1.up)} in ${fmt(res.open1.seconds, 1)} s (${fmt(res.open1.up / res.open1.seconds)}/s); ` +
    `gateway CPU ${fmt(res.open1.gatewayCpu, 2)} s (${fmt((res.open1.gatewayCpu * 1e6) / res.open1.up, 0)} µs per open) |`);
  if (res.openRest) {
    p(`| sessions opened: gateways 2..${G} at once | ${fmt(res.openRest.up)} in ${fmt(res.openRest.seconds, 1)} s (${fmt(res.openRest.up / res.openRest.seconds)}/s); ` +
      `gateways' CPU ${fmt(res.openRest.gatewayCpu, 2)} s (${fmt((res.openRest.gatewayCpu * 1e6) / res.openRest.up, 0)} µs per open) |`);
  }
  p(`| load processes' RSS, total (MiB) | ${fmt(res.receiverRss.reduce((s, v) => s + v, 0) / 1024, 0)} |`);
  p('');
  p('| phase | offered msg/s | sent | delivered | lost / dup / misrouted | delivered msg/s | p50 / p99 ms (after gw ts p99) | relayed share | gateway CPU µs/msg (user/kernel) | per gateway µs/msg | Redis µs/msg | Redis calls/msg | server / load / rest CPU s | window s |');
  p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of res.rows) {
    const lost = r.sent - r.delivered;
    const fwd = r.metrics.imgw_relay_received_total.reduce((s, v) => s + v, 0);
    const us = (s) => (s * 1e6) / r.delivered;
    const u = r.cpu.gw.reduce((s, x) => s + x.user, 0);
    const k = r.cpu.gw.reduce((s, x) => s + x.system, 0);
    // A gateway handles the messages dealt to it and those relayed to it.
    const perGw = r.cpu.gw.map((x, i) => {
      const handled = r.sent / r.links + r.metrics.imgw_relay_received_total[i];
      return fmt(((x.user + x.system) * 1e6) / handled, 0);
    }).join(' / ');
    const calls = Object.values(r.redisCmds).reduce((s, c) => s + c.calls, 0);
    p(`| ${r.phase} (${r.ngw} gw) | ${fmt(r.rate)} | ${fmt(r.sent)} | ${fmt(r.delivered)} | ${fmt(lost)} / ${fmt(r.dups)} / ${fmt(r.misrouted)} | ` +
      `${fmt(r.delivered / r.win)} | ${fmt(r.lat.p50, 2)} / ${fmt(r.lat.p99, 1)} (${fmt(r.afterGw.p99, 1)}) | ${fmt((100 * fwd) / r.delivered, 1)} % | ` +
      `${fmt(us(r.cpu.gwTotal), 1)} (${fmt(us(u), 1)} / ${fmt(us(k), 1)}) | ${perGw} | ${fmt(us(r.cpu.redis), 1)} | ${fmt(calls / r.delivered, 2)} | ` +
      `${fmt(r.cpu.server, 2)} / ${fmt(r.cpu.receivers, 2)} / ${fmt(r.cpu.rest, 2)} | ${fmt(r.win, 1)} |`);
  }
  p('');
  p('Redis commands per delivered message (INFO commandstats, which also counts the commands a script runs; calls and µs inside Redis per call):\n');
  for (const r of res.rows) {
    const parts = Object.entries(r.redisCmds).sort((a, b) => b[1].calls - a[1].calls)
      .map(([c, v]) => `${c} ${fmt(v.calls / r.delivered, 2)} (${fmt(v.usec / v.calls, 1)} µs)`);
    p(`- ${r.phase} at ${fmt(r.rate)} msg/s: ${parts.join(', ')}`);
  }
  const problems = [];
  for (const r of res.rows) {
    if (r.sent !== r.delivered) problems.push(`${r.phase} ${r.rate}: ${r.sent - r.delivered} lost`);
    if (r.dups || r.misrouted || r.foreign) problems.push(`${r.phase} ${r.rate}: ${r.dups} dup, ${r.misrouted} misrouted, ${r.foreign} foreign`);
    if (r.upAfter < r.ngw * PER_GW) problems.push(`${r.phase} ${r.rate}: ${r.upAfter} sessions up after`);
    if (Object.keys(r.drops).length || Object.keys(r.errors).length) problems.push(`${r.phase} ${r.rate}: closes ${JSON.stringify(r.drops)}, errors ${JSON.stringify(r.errors)}`);
    if (r.stalledMs) problems.push(`${r.phase} ${r.rate}: the server's output stalled ${r.stalledMs} ms`);
    const refused = r.metrics.imgw_relay_refused_total.reduce((s, v) => s + v, 0) + r.metrics.imgw_relay_errors_total.reduce((s, v) => s + v, 0);
    if (refused) problems.push(`${r.phase} ${r.rate}: relay refused/errors ${refused}`);
  }
  p(`\nProblems: ${problems.length ? problems.join('; ') : 'none'}. Load processes' worst event-loop delay per window (ms): ` +
    `${res.rows.map((r) => fmt(r.loopDelayMaxMs, 0)).join(', ')}. Rest of the machine per window is other work sharing the cores.`);
  // Seconds outside the measured windows in which a gateway used more than a quarter of a core.
  const busy = [];
  for (let i = 1; i < res.timeline.length; i++) {
    const a = res.timeline[i - 1];
    const b = res.timeline[i];
    if (res.windows.some((w) => b.t >= w.from && a.t <= w.to)) continue;
    b.gw.forEach((v, g) => {
      const d = v - a.gw[g];
      if (!(a.t >= res.upAtMs[g])) return;
      if (d > 0.25) busy.push(`gw${g + 1} ${fmt(d, 2)} s at +${fmt(b.t / 1000, 0)} s (${fmt((b.t - res.upAtMs[g]) / 1000, 0)} s after its sessions were up)`);
    });
  }
  p(`Outside the windows, seconds in which a gateway used > 0.25 CPU s: ${busy.length ? busy.join('; ') : 'none'} ` +
    '(from the time its own sessions were all up; others\' opens may still be running).');
  p(`Single-gateway vs scale-out gateway CPU per message, same rate per gateway: ` +
    res.rows.filter((r) => r.phase === 'multi').map((r) => {
      const s = res.rows.find((x) => x.phase === 'single' && Math.abs(x.rate * G - r.rate) < 1e-6);
      return s ? `${fmt(r.rate)}: ${ratio(r.cpu.gwTotal / r.delivered, s.cpu.gwTotal / s.delivered)}` : '';
    }).filter(Boolean).join(', '));
}

main().then(async () => {
  await stopAll();
}, async (err) => {
  console.error(err);
  await stopAll();
  process.exitCode = 1;
});
