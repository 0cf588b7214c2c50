#!/usr/bin/env node
// imgw gateway-core benchmark: idle sessions, end-to-end latency and CPU per message,
// imgw (XEP-0114 component + JSON over WebSocket) against the alternative the gateway
// replaces, every web user holding its own XMPP-over-WebSocket session on the XMPP
// server (RFC 7395, what Converse.js does). See bench/README.md.
//
//   node bench/run.mjs [--sessions N] [--rate R] [--duration S] [--senders M]
//                      [--mode both|imgw|prosody] [--json FILE] ...
//
// Each phase starts its own private Prosody (and, for imgw, the gateway), opens N web
// sessions from load processes, measures resident memory before and after, then has M
// XMPP c2s senders send at an aggregate R msg/s to random web users for S seconds while
// the web sessions record end-to-end latency. It prints a Markdown report.

import fs from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { forkChild } from './lib/child.mjs';
import { spawn } from 'node:child_process';
import { startGateway } from './lib/gateway.mjs';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { startRedis } from '../tests/lib/redis.mjs';
import { cpuSeconds, cpuSecondsOf, cpuSplit, dirStats, machineBusySeconds, machineInfo, processTree, rssKiB } from './lib/procstat.mjs';
import { startBenchProsody } from './lib/prosody-bench.mjs';
import { fmt, mergeCounts, mergeTimelines, ratio, summarize } from './lib/stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');

const USAGE = `usage: node bench/run.mjs [options]
  --sessions N      web sessions (default 5000; at most ~19,900 fit in one server process
                    here because of the 20,000 open-file limit)
  --rate R          aggregate messages per second from the XMPP senders (default 1000)
  --duration S      seconds of sending (default 20)
  --senders M       XMPP c2s sender connections (default 10)
  --mode MODES      comma-separated phases: imgw, imgw-full, prosody; or both
                    (= imgw,prosody) or all (= imgw,imgw-full,prosody) (default both)
  --per-proc K      web sessions per load process (default 10000, at most 15000)
  --concurrency C   session opens in flight per load process (default 100)
  --warmup S        seconds of unmeasured sending first (default 2)
  --settle S        seconds to wait after the last open before measuring idle RSS and CPU
                    (default 12: the gateway's per-connection auth timers, 10 s by
                    default, are still firing before that)
  --gateway PATH    gateway binary (default build/gateway/imgw)
  --gateway-set k=v extra gateway config key (repeatable)
  --prosody-config LUA  extra global Prosody config, after the bench's (repeatable)
  --quiet-wait S    before each measured window, wait up to S s until the rest of the
                    machine uses less than 0.15 of a core (default 0: do not wait)
  --pg-fsync on|off imgw-full: PostgreSQL fsync (default on, as in production;
                    synchronous_commit stays on either way)
  --attach CMD      during each measured window run CMD through sh, {gw} replaced by the
                    gateway's PID and {prosody} by Prosody's, {phase} by the phase name;
                    it gets SIGINT at the end of the window and its output goes to stderr
                    (e.g. 'strace -c -f -p {gw}', 'perf record -g -p {gw} -o /tmp/{phase}.data')
  --json FILE       also write the raw results as JSON
  --keep            keep the temp dir (configs, logs) for inspection
  -h, --help`;

const { values: opt } = parseArgs({
  options: {
    sessions: { type: 'string', default: '5000' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '20' },
    senders: { type: 'string', default: '10' },
    mode: { type: 'string', default: 'both' },
    'per-proc': { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '100' },
    warmup: { type: 'string', default: '2' },
    settle: { type: 'string', default: '12' },
    'quiet-wait': { type: 'string', default: '0' },
    gateway: { type: 'string', default: path.join(repo, 'build/gateway/imgw') },
    'gateway-set': { type: 'string', multiple: true, default: [] },
    'prosody-config': { type: 'string', multiple: true, default: [] },
    json: { type: 'string' },
    'pg-fsync': { type: 'string', default: 'on' },
    attach: { type: 'string' },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log(USAGE);
  process.exit(0);
}

const N = Number(opt.sessions);
const R = Number(opt.rate);
const S = Number(opt.duration);
const M = Number(opt.senders);
const perProc = Math.min(15000, Number(opt['per-proc']));
const concurrency = Number(opt.concurrency);
const warmup = Number(opt.warmup);
const settle = Number(opt.settle);
const quietWait = Number(opt['quiet-wait']);
const MODE_ALIASES = { both: 'imgw,prosody', all: 'imgw,imgw-full,prosody' };
const KINDS = ['imgw', 'imgw-full', 'prosody'];
const kindsAsked = (MODE_ALIASES[opt.mode] ?? opt.mode).split(',').map((k) => k.trim());
if (![N, R, S, M, perProc, concurrency].every((v) => Number.isInteger(v) && v > 0) ||
    !kindsAsked.every((k) => KINDS.includes(k)) || !['on', 'off'].includes(opt['pg-fsync']) ||
    !(warmup >= 0) || !(settle >= 0) || !(quietWait >= 0)) {
  console.error(USAGE);
  process.exit(2);
}
const gatewayExtra = {};
for (const kv of opt['gateway-set']) {
  const i = kv.indexOf('=');
  if (i <= 0) {
    console.error(`--gateway-set wants key=value, got ${kv}`);
    process.exit(2);
  }
  gatewayExtra[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
}

const DOMAIN = 'bench.localhost';
const GW_DOMAIN = `gw.${DOMAIN}`;
const SECRET = 'bench-component-secret';
const USER_PREFIX = 'u';
const PASSWORD = 'pw';
const IDLE_SECONDS = 5;

const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Everything started, so that errors and Ctrl-C still stop it. */
const live = { children: new Set(), servers: new Set() };
/** The copy of --gateway that the imgw phase runs. */
let gatewayBinary = opt.gateway;
async function stopAll() {
  for (const c of live.children) c.kill();
  live.children.clear();
  for (const s of [...live.servers].reverse()) {
    try { await s.stop(); } catch { /* best effort */ }
  }
  live.servers.clear();
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    log(`${sig}: stopping`);
    await stopAll();
    process.exit(130);
  });
}

/**
 * Waits until the receivers have seen `sent` unique messages, or until no new one has
 * arrived for `quietMs`.
 */
async function drain(receivers, sent, quietMs = 2000, maxMs = 30000) {
  const t0 = Date.now();
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const counts = await Promise.all(receivers.map((r) => r.ask({ cmd: 'count' }, 'count')));
    const got = counts.reduce((s, c) => s + c.unique, 0);
    if (got >= sent) return got;
    if (got !== last) {
      last = got;
      lastChange = Date.now();
    }
    if (Date.now() - lastChange > quietMs || Date.now() - t0 > maxMs) return got;
    await sleep(50);
  }
}

/**
 * Waits until everything but our own processes uses less than 0.15 of a core, measured
 * over 1 s, or until --quiet-wait seconds have passed.
 * @returns {Promise<{cores: number, waitedSeconds: number}>} the last reading
 */
async function waitForQuiet(kind, ownPids) {
  const t0 = Date.now();
  for (let said = false; ;) {
    const b0 = machineBusySeconds();
    const o0 = cpuSecondsOf(ownPids);
    await sleep(1000);
    const cores = (machineBusySeconds() - b0) - (cpuSecondsOf(ownPids) - o0);
    const waitedSeconds = (Date.now() - t0) / 1000;
    if (cores < 0.15 || waitedSeconds >= quietWait) {
      if (said || cores >= 0.15) log(`${kind}: other work on the machine: ${cores.toFixed(2)} cores; measuring now`);
      return { cores, waitedSeconds };
    }
    if (!said) log(`${kind}: other work on the machine uses ${cores.toFixed(2)} cores; waiting up to ${quietWait} s`);
    said = true;
  }
}

/**
 * One phase: 'imgw' (web sessions on the gateway) or 'prosody' (web sessions as XMPP
 * over WebSocket on Prosody).
 */
/**
 * One counter from the gateway's /metrics (NaN when it cannot be read).
 * @param {{listenPort:number}} gateway
 * @param {string} name
 */
async function gatewayCounter(gateway, name) {
  try {
    const r = await fetch(`http://127.0.0.1:${gateway.listenPort}/metrics`);
    const m = (await r.text()).match(new RegExp(`^${name} (\\d+)$`, 'm'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

async function runPhase(kind, baseDir) {
  const dir = path.join(baseDir, kind);
  const res = { kind, problems: [] };
  const viaGateway = kind !== 'prosody';
  const full = kind === 'imgw-full';
  let pg = null;
  let redis = null;
  if (full) {
    log(`${kind}: starting PostgreSQL (fsync ${opt['pg-fsync']}) and Redis`);
    pg = await startPostgres({
      db: 'imgw',
      settings: opt['pg-fsync'] === 'on' ? { fsync: 'on', full_page_writes: 'on' } : {},
    });
    live.servers.add(pg);
    redis = await startRedis();
    live.servers.add(redis);
  }
  log(`${kind}: starting Prosody`);
  const prosody = await startBenchProsody({
    domain: DOMAIN,
    component: viaGateway ? { domain: GW_DOMAIN, secret: SECRET } : null,
    // Same-JID mode: the companion (protocol version 1) makes every web user an online
    // resource uN@DOMAIN/web and copies each message to the gateway; mod_offline is
    // loaded so that what it stores for web users (it should store nothing) shows.
    companion: full ? { gateway: GW_DOMAIN } : null,
    modules: full ? ['offline'] : [],
    websocket: kind === 'prosody',
    extraConfig: opt['prosody-config'].join('\n'),
  });
  const prosodyPid = prosody.pid();
  const prosodyHandle = { stop: () => (opt.keep ? prosody.stop() : prosody.cleanup()) };
  live.servers.add(prosodyHandle);
  res.prosodyDir = prosody.dir;
  if (opt.keep) log(`${kind}: Prosody dir ${prosody.dir}`);
  const senderUsers = Array.from({ length: M }, (_, i) => [`app${i}`, PASSWORD]);
  await prosody.addAccounts(senderUsers);
  if (kind === 'prosody') {
    const t = Date.now();
    await prosody.addAccounts(Array.from({ length: N }, (_, i) => [`${USER_PREFIX}${i}`, PASSWORD]));
    log(`prosody: wrote ${N} accounts in ${Date.now() - t} ms`);
  }

  let gateway = null;
  if (viaGateway) {
    log(`${kind}: starting ${opt.gateway} (copied to ${gatewayBinary})`);
    const fullConf = {};
    if (full) {
      const spool = path.join(dir, 'spool');
      await fs.mkdir(spool, { recursive: true });
      Object.assign(fullConf, {
        mode: 'samejid',
        pg_conninfo: `"${pg.connString}"`,
        spool_dir: spool,
        redis_host: '127.0.0.1',
        redis_port: String(redis.port),
      });
    }
    gateway = await startGateway({
      binary: gatewayBinary,
      dir,
      xmppPort: prosody.componentPort,
      xmppDomain: DOMAIN,
      componentDomain: GW_DOMAIN,
      componentSecret: SECRET,
      extra: { ...fullConf, ...gatewayExtra },
    });
    live.servers.add(gateway);
    res.gatewayConfig = gateway.config;
    if (full) {
      // Same-JID hellos of unknown users wait for the companion, so the link must be up.
      const t = Date.now();
      for (;;) {
        let h = null;
        try {
          h = await (await fetch(`http://127.0.0.1:${gateway.listenPort}/health`,
            { signal: AbortSignal.timeout(2000) })).json();
        } catch { /* not yet */ }
        if (h && h.link === 'up') break;
        if (gateway.exited || Date.now() - t > 20000) {
          throw new Error(`${kind}: the gateway's XMPP link is not up: ${JSON.stringify(h)}\n${await gateway.tail()}`);
        }
        await sleep(100);
      }
    }
  }
  const holderPid = viaGateway ? gateway.pid : prosodyPid;
  const serversDown = () => {
    const out = [];
    if (gateway && gateway.exited) out.push(`imgw exited ${JSON.stringify(gateway.exited)}`);
    if (prosody.pid() === undefined) out.push(`prosody exited; stderr: ${prosody.stderrText().slice(-2000)}`);
    return out;
  };

  const sender = forkChild(path.join(here, 'lib/sender-proc.mjs'),
    { port: prosody.c2sPort, domain: DOMAIN, users: senderUsers });
  live.children.add(sender);
  const ready = await sender.ask({ cmd: 'login' }, 'ready');
  if (ready.failed) res.problems.push(`${ready.failed} of ${M} senders failed to log in: ${JSON.stringify(ready.failures)}`);
  if (!ready.ok) throw new Error(`${kind}: no sender could log in: ${JSON.stringify(ready.failures)}`);
  res.senders = ready.ok;

  // Let start-up garbage settle before the baseline.
  await sleep(1000);
  res.rss = { holderBefore: rssKiB(holderPid), prosodyBefore: rssKiB(prosodyPid) };

  const nProcs = Math.ceil(N / perProc);
  const receivers = [];
  for (let i = 0; i < nProcs; i++) {
    const first = Math.floor((i * N) / nProcs);
    const next = Math.floor(((i + 1) * N) / nProcs);
    const r = forkChild(path.join(here, 'lib/receiver-proc.mjs'), {
      kind: viaGateway ? 'imgw' : 'xmpp-ws',
      url: viaGateway ? gateway.url : `ws://127.0.0.1:${prosody.httpPort}/xmpp-websocket`,
      first,
      count: next - first,
      prefix: USER_PREFIX,
      domain: DOMAIN,
      password: PASSWORD,
      // Each load process has its own source address, so the phases never run short of
      // ephemeral ports on one address pair.
      localAddress: `127.0.${KINDS.indexOf(kind) + 1}.${i + 1}`,
      concurrency,
      openTimeoutMs: 60000,
    }, { heapMiB: 2048 });
    live.children.add(r);
    receivers.push(r);
  }
  log(`${kind}: opening ${N} web sessions from ${nProcs} load process(es)`);
  const t0 = Date.now();
  const opened = await Promise.all(receivers.map((r) => r.ask({ cmd: 'open' }, 'opened')));
  res.sessions = {
    requested: N,
    up: opened.reduce((s, o) => s + o.ok, 0),
    failed: opened.reduce((s, o) => s + o.failed, 0),
    failures: mergeCounts(opened.map((o) => o.failures)),
    openSeconds: (Date.now() - t0) / 1000,
  };
  const skip = opened.flatMap((o) => o.failedIdx);
  log(`${kind}: ${res.sessions.up} sessions up, ${res.sessions.failed} failed in ${res.sessions.openSeconds} s`);
  if (res.sessions.failed) {
    res.problems.push(`${res.sessions.failed} of ${N} sessions failed to open: ${JSON.stringify(res.sessions.failures)}`);
  }
  await sleep(settle * 1000);
  // CPU the idle sessions cost: timers, pings, bookkeeping that grows with the count.
  const idle0 = { holder: cpuSeconds(holderPid), prosody: cpuSeconds(prosodyPid) };
  await sleep(IDLE_SECONDS * 1000);
  res.idleCpuPct = {
    holder: ((cpuSeconds(holderPid) - idle0.holder) / IDLE_SECONDS) * 100,
    prosody: ((cpuSeconds(prosodyPid) - idle0.prosody) / IDLE_SECONDS) * 100,
  };
  res.rss.holderIdle = rssKiB(holderPid);
  res.rss.prosodyIdle = rssKiB(prosodyPid);
  const up = res.sessions.up || NaN;
  res.rss.holderPerSessionKiB = (res.rss.holderIdle - res.rss.holderBefore) / up;
  res.rss.prosodyPerSessionKiB = (res.rss.prosodyIdle - res.rss.prosodyBefore) / up;
  res.rss.serverPerSessionKiB = viaGateway
    ? res.rss.holderPerSessionKiB + res.rss.prosodyPerSessionKiB
    : res.rss.prosodyPerSessionKiB;
  res.rss.receiversKiB = receivers.reduce((s, r) => s + rssKiB(r.pid), 0);
  for (const d of serversDown()) res.problems.push(`after opening sessions: ${d}`);

  const targets = { prefix: USER_PREFIX, count: N, domain: kind === 'imgw' ? GW_DOMAIN : DOMAIN };
  const offline = () => (full ? dirStats(path.join(prosody.dir, 'data', 'bench%2elocalhost', 'offline')) : null);
  res.offlineBefore = offline();
  if (!res.sessions.up) res.problems.push('no session opened; nothing to measure');
  if (warmup > 0 && !serversDown().length && res.sessions.up) {
    await Promise.all(receivers.map((r) => r.ask({ cmd: 'reset', run: 'w' }, 'reset')));
    const wRate = Math.min(R, 500);
    const w = await sender.ask({ cmd: 'run', run: 'w', rate: wRate, seconds: warmup, targets, skip }, 'done');
    const got = await drain(receivers, w.sent, 3000, 15000);
    log(`${kind}: warm-up ${got}/${w.sent} delivered`);
    res.warmup = { sent: w.sent, delivered: got };
    if (got === 0) res.problems.push(`warm-up: none of ${w.sent} messages was delivered; measurement skipped`);
  }

  if (!serversDown().length && res.sessions.up && !(res.warmup && res.warmup.delivered === 0)) {
    const ownPids = [holderPid, prosodyPid, sender.pid, process.pid, ...receivers.map((r) => r.pid),
      ...(pg ? processTree(pg.pid) : []), ...(redis ? [redis.pid] : [])];
    if (quietWait > 0) res.otherLoadBefore = await waitForQuiet(kind, [...new Set(ownPids)]);
    // Timeline buckets count from a moment shortly before the first send.
    const start = performance.timeOrigin + performance.now();
    await Promise.all(receivers.map((r) => r.ask({ cmd: 'reset', run: 'm', start }, 'reset')));
    const pids = {
      imgw: gateway ? [gateway.pid] : [],
      prosody: [prosodyPid],
      // PostgreSQL's work is done in its backends, children of the postmaster.
      postgres: pg ? processTree(pg.pid) : [],
      redis: redis ? [redis.pid] : [],
      receivers: receivers.map((r) => r.pid),
      senders: [sender.pid],
    };
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, v]) => [k, cpuSecondsOf(v)]));
    const busy0 = machineBusySeconds();
    const split0 = gateway ? cpuSplit(gateway.pid) : null;
    const batches0 = full ? await gatewayCounter(gateway, 'imgw_store_batches_total') : NaN;
    const attached = startAttached(kind, gateway ? gateway.pid : '', prosodyPid);
    const w0 = Date.now();
    log(`${kind}: sending ${R} msg/s for ${S} s`);
    const done = await sender.ask({ cmd: 'run', run: 'm', rate: R, seconds: S, targets, skip }, 'done');
    const got = await drain(receivers, done.sent);
    const windowSeconds = (Date.now() - w0) / 1000;
    await stopAttached(attached);
    const split1 = gateway ? cpuSplit(gateway.pid) : null;
    const batches1 = full ? await gatewayCounter(gateway, 'imgw_store_batches_total') : NaN;
    const cpu1 = Object.fromEntries(Object.entries(pids).map(([k, v]) => [k, cpuSecondsOf(v)]));
    const machineBusy = machineBusySeconds() - busy0;
    const stats = await Promise.all(receivers.map((r) => r.ask({ cmd: 'collect' }, 'stats')));
    const lat = summarize(stats.map((s) => s.lat));
    const cpu = Object.fromEntries(Object.keys(pids).map((k) => [k, cpu1[k] - cpu0[k]]));
    const delivered = stats.reduce((s, x) => s + x.unique, 0);
    res.load = {
      offeredRate: R,
      sent: done.sent,
      sendSeconds: done.seconds,
      senderLagMaxMs: done.lagMaxMs,
      delivered,
      lost: done.sent - delivered,
      dups: stats.reduce((s, x) => s + x.dups, 0),
      misrouted: stats.reduce((s, x) => s + x.misrouted, 0),
      foreign: stats.reduce((s, x) => s + x.foreign, 0),
      deliveredPerSec: delivered / done.seconds,
      windowSeconds,
      latencyMs: lat,
      afterGatewayMs: viaGateway ? summarize(stats.map((x) => x.afterGw)) : null,
      cpuSeconds: cpu,
      // The gateway's CPU split: user mode (its code and its libraries) and kernel mode
      // (system calls: socket writes and reads, polling).
      imgwUserSystemSeconds: split0 ? [split1.user - split0.user, split1.system - split0.system] : null,
      // PostgreSQL transactions the gateway's writer committed (one per batch): a count,
      // so unlike CPU seconds it does not depend on other work on the machine.
      storeBatches: batches1 - batches0,
      // Everything else that ran on the machine meanwhile (other users, the kernel's
      // work not charged to a process, this orchestrator).
      otherCpuSeconds: machineBusy - Object.values(cpu).reduce((a, b) => a + b, 0),
      cpuUsPerMsg: Object.fromEntries(Object.entries(cpu).map(([k, v]) =>
        [k, delivered ? (v / delivered) * 1e6 : NaN])),
      timeline: mergeTimelines(stats.map((s) => s.timeline)),
      receiverLoopDelayMs: {
        p99: Math.max(...stats.map((x) => x.loopDelayMs.p99)),
        max: Math.max(...stats.map((x) => x.loopDelayMs.max)),
      },
      sessionsUpAfter: stats.reduce((s, x) => s + x.up, 0),
      dropsAfterOpen: mergeCounts(stats.map((s) => s.dropsAfterOpen)),
      errorsAfterOpen: mergeCounts(stats.map((s) => s.errorsAfterOpen)),
      sendersStopped: done.stoppedByPeer,
    };
    log(`${kind}: delivered ${delivered}/${done.sent}, p99 ${fmt(lat.p99, 2)} ms`);
    log(`${kind}: worst latency per second of sending (ms): ` +
      res.load.timeline.map(([, mx]) => fmt(mx, 1)).join(' '));
    if (got !== delivered) log(`${kind}: (drain saw ${got})`);
    if (res.load.lost) res.problems.push(`${res.load.lost} of ${done.sent} messages were not delivered`);
    if (res.load.dups) res.problems.push(`${res.load.dups} duplicate deliveries`);
    if (res.load.misrouted) res.problems.push(`${res.load.misrouted} messages reached the wrong user`);
    if (Object.keys(res.load.dropsAfterOpen).length) {
      res.problems.push(`sessions closed by the server during the run, by close code: ${JSON.stringify(res.load.dropsAfterOpen)}`);
    }
    if (Object.keys(res.load.errorsAfterOpen).length) {
      res.problems.push(`error frames during the run: ${JSON.stringify(res.load.errorsAfterOpen)}`);
    }
    if (Object.keys(done.stoppedByPeer || {}).length) {
      res.problems.push(`sender streams ended by Prosody: ${JSON.stringify(done.stoppedByPeer)}`);
    }
    res.rss.holderAfterLoad = rssKiB(holderPid);
    res.rss.prosodyAfterLoad = rssKiB(prosodyPid);
    if (full) {
      // Prosody writes an offline message as it routes it; give the last ones a moment.
      await sleep(1000);
      res.offlineAfter = offline();
      if (res.offlineAfter.items > (res.offlineBefore?.items ?? 0)) {
        res.problems.push(`Prosody stored ${res.offlineAfter.items - (res.offlineBefore?.items ?? 0)} message(s) offline for web-online users`);
      }
    }
  }
  for (const d of serversDown()) res.problems.push(`at the end: ${d}`);
  if (gateway && gateway.exited) res.gatewayLogTail = await gateway.tail();

  log(`${kind}: closing`);
  await Promise.all(receivers.map((r) => r.ask({ cmd: 'close' }, 'closed').catch(() => {})));
  await sender.ask({ cmd: 'close' }, 'closed').catch(() => {});
  for (const r of receivers) live.children.delete(r);
  live.children.delete(sender);
  if (gateway) {
    const st = await gateway.stop();
    live.servers.delete(gateway);
    res.gatewayExit = st;
    if (st.signal && st.signal !== 'SIGTERM') res.problems.push(`imgw ended by ${st.signal} at shutdown`);
    else if (st.code) res.problems.push(`imgw exited with status ${st.code} at shutdown`);
  }
  await prosodyHandle.stop();
  live.servers.delete(prosodyHandle);
  for (const s of [redis, pg]) {
    if (!s) continue;
    await s.cleanup();
    live.servers.delete(s);
  }
  return res;
}

/**
 * Starts --attach for a measured window (or nothing).
 * @returns {{child: import('node:child_process').ChildProcess, exited: Promise<void>}|null}
 */
function startAttached(kind, gwPid, prosodyPid) {
  if (!opt.attach) return null;
  const cmd = opt.attach.replaceAll('{gw}', String(gwPid)).replaceAll('{prosody}', String(prosodyPid))
    .replaceAll('{phase}', kind);
  log(`${kind}: attaching: ${cmd}`);
  // Its own process group, so that SIGINT reaches the tool and not only sh.
  const child = spawn('sh', ['-c', `exec ${cmd}`], { stdio: ['ignore', 'inherit', 'inherit'], detached: true });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  live.children.add({ kill: () => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } } });
  return { child, exited };
}

async function stopAttached(a) {
  if (!a) return;
  try { process.kill(-a.child.pid, 'SIGINT'); } catch { /* gone */ }
  const t = setTimeout(() => { try { process.kill(-a.child.pid, 'SIGKILL'); } catch { /* gone */ } }, 30000);
  await a.exited;
  clearTimeout(t);
}

/** Which gateway build ran: binary hash and time, and the tree it most likely came from. */
async function gatewayBuild(copy) {
  const out = { path: path.relative(repo, opt.gateway) || opt.gateway };
  try {
    const buf = await fs.readFile(copy);
    const { createHash } = await import('node:crypto');
    out.sha256 = createHash('sha256').update(buf).digest('hex').slice(0, 12);
    out.mtime = (await fs.stat(opt.gateway)).mtime.toISOString().replace(/\.\d+Z$/, 'Z');
  } catch { /* missing binary: the imgw phase reports it */ }
  try {
    out.commit = execFileSync('git', ['-C', repo, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
    out.dirty = execFileSync('git', ['-C', repo, 'status', '--porcelain', '--', 'gateway'],
      { encoding: 'utf8' }).trim() !== '';
  } catch { /* not a git checkout */ }
  return out;
}

function prosodyVersion() {
  try {
    return execFileSync('dpkg-query', ['-W', '-f=${Version}', 'prosody'], { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

const KiB = (v) => fmt(v / 1024, 1);

const COLUMN = {
  imgw: 'imgw, component only (JSON/WebSocket)',
  'imgw-full': 'imgw production path (same-JID, companion v1, PostgreSQL, Redis)',
  prosody: 'Prosody (XMPP over WebSocket)',
};

/** Builds the Markdown report: one column per phase, then each gateway phase / Prosody. */
function report(results, meta) {
  const p = results.find((r) => r.kind === 'prosody');
  const cols = results;
  const ratioCols = p ? results.filter((r) => r !== p) : [];
  const L = [];
  L.push(`### Run of ${meta.date}`);
  L.push('');
  L.push(`Command: \`${meta.command}\``);
  L.push('');
  L.push(`Machine: ${meta.machine.nproc} CPUs (${meta.machine.cpu}), ${meta.machine.memGiB} GiB RAM, ` +
    `${meta.machine.kernel}; Node ${meta.machine.node}, Prosody ${meta.prosody}; ` +
    `load generators on the same machine.`);
  if (meta.gateway) {
    const gb = meta.gateway;
    L.push('');
    L.push(`Gateway: \`${gb.path}\` sha256 ${gb.sha256 ?? '?'} built ${gb.mtime ?? '?'}, ` +
      `tree at ${gb.commit ?? '?'}${gb.dirty ? ' with uncommitted changes under gateway/' : ''}.`);
  }
  if (results.some((r) => r.kind === 'imgw-full')) {
    L.push('');
    L.push(`Production path: PostgreSQL 15 with fsync ${opt['pg-fsync']} and synchronous_commit on, ` +
      'Redis 7 (chat lists, unread counts, relay directory), Prosody with mod_imgw_companion and mod_offline.');
  }
  L.push('');
  const head = ['', ...cols.map((r) => COLUMN[r.kind]), ...ratioCols.map((r) => `${r.kind} / Prosody`)];
  L.push(`| ${head.join(' | ')} |`);
  L.push(`|${head.map((_, i) => (i ? '---:' : '---')).join('|')}|`);
  const row = (label, get, digits = 0, withRatio = true) => {
    const vals = cols.map((r) => { try { return get(r); } catch { return NaN; } });
    const cells = vals.map((v) => (typeof v === 'string' ? v : fmt(v, digits)));
    const pv = p ? vals[cols.indexOf(p)] : NaN;
    for (const r of ratioCols) cells.push(withRatio ? ratio(vals[cols.indexOf(r)], pv) : '');
    L.push(`| ${label} | ${cells.join(' | ')} |`);
  };
  const gw = (r) => r.kind !== 'prosody';
  const full = (r) => r.kind === 'imgw-full';
  row('web sessions up / requested', (r) => `${fmt(r.sessions.up)} / ${fmt(r.sessions.requested)}`, 0, false);
  row('time to open all sessions (s)', (r) => r.sessions.openSeconds, 1);
  row('session holder RSS before / idle (MiB)', (r) => `${KiB(r.rss.holderBefore)} / ${KiB(r.rss.holderIdle)}`, 0, false);
  row('**session holder RSS per idle session (KiB)**', (r) => r.rss.holderPerSessionKiB, 2);
  row('Prosody RSS change per web session (KiB)', (r) => r.rss.prosodyPerSessionKiB, 2);
  row('server-side RSS per session, total (KiB)', (r) => r.rss.serverPerSessionKiB, 2);
  row(`session holder CPU while idle (% of a core, ${IDLE_SECONDS} s)`, (r) => r.idleCpuPct.holder, 1);
  row('session holder RSS after the load (MiB)', (r) => r.rss.holderAfterLoad / 1024, 1);
  row('offered rate (msg/s) x duration (s)', (r) => `${fmt(r.load.offeredRate)} x ${fmt(r.load.sendSeconds, 1)}`, 0, false);
  row('messages sent', (r) => r.load.sent);
  row('**delivered msg/s**', (r) => r.load.deliveredPerSec, 0);
  row('lost / duplicated / misrouted', (r) => `${fmt(r.load.lost)} / ${fmt(r.load.dups)} / ${fmt(r.load.misrouted)}`, 0, false);
  row('latency p50 (ms)', (r) => r.load.latencyMs.p50, 2);
  row('latency p90 (ms)', (r) => r.load.latencyMs.p90, 2);
  row('**latency p99 (ms)**', (r) => r.load.latencyMs.p99, 2);
  row('latency p99.9 (ms)', (r) => r.load.latencyMs.p999, 2);
  row('latency max (ms)', (r) => r.load.latencyMs.max, 2);
  row('of which after imgw stamped `ts`, p50 / p99 / max (ms)', (r) => (r.load.afterGatewayMs
    ? `${fmt(r.load.afterGatewayMs.p50, 2)} / ${fmt(r.load.afterGatewayMs.p99, 2)} / ${fmt(r.load.afterGatewayMs.max, 2)}`
    : '-'), 0, false);
  row('load process event-loop delay p99 / max (ms)', (r) =>
    `${fmt(r.load.receiverLoopDelayMs.p99, 1)} / ${fmt(r.load.receiverLoopDelayMs.max, 1)}`, 0, false);
  row('CPU s in window: imgw', (r) => (gw(r) ? r.load.cpuSeconds.imgw : '-'), 2, false);
  row('CPU s in window: Prosody', (r) => r.load.cpuSeconds.prosody, 2);
  row('CPU s in window: PostgreSQL / Redis', (r) => (full(r)
    ? `${fmt(r.load.cpuSeconds.postgres, 2)} / ${fmt(r.load.cpuSeconds.redis, 2)}` : '-'), 0, false);
  row('CPU s in window: load (receivers + senders)', (r) => r.load.cpuSeconds.receivers + r.load.cpuSeconds.senders, 2);
  row('CPU s in window: rest of the machine', (r) => r.load.otherCpuSeconds, 2, false);
  row('CPU window (s)', (r) => r.load.windowSeconds, 1, false);
  row('**CPU µs per message: imgw**', (r) => (gw(r) ? r.load.cpuUsPerMsg.imgw : '-'), 1, false);
  row('of which user / kernel mode (µs)', (r) => (gw(r) && r.load.imgwUserSystemSeconds
    ? r.load.imgwUserSystemSeconds.map((v) => fmt((v / r.load.delivered) * 1e6, 1)).join(' / ') : '-'), 0, false);
  row('**CPU µs per message: Prosody**', (r) => r.load.cpuUsPerMsg.prosody, 1);
  row('CPU µs per message: PostgreSQL / Redis', (r) => (full(r)
    ? `${fmt(r.load.cpuUsPerMsg.postgres, 1)} / ${fmt(r.load.cpuUsPerMsg.redis, 1)}` : '-'), 0, false);
  row('CPU µs per message: imgw + Prosody', (r) => r.load.cpuUsPerMsg.prosody + (r.load.cpuUsPerMsg.imgw || 0), 1);
  row('CPU µs per message: load generators', (r) => r.load.cpuUsPerMsg.receivers + r.load.cpuUsPerMsg.senders, 1);
  row('messages per PostgreSQL batch (writer transactions)', (r) => (full(r) && r.load.storeBatches > 0
    ? fmt(r.load.delivered / r.load.storeBatches, 1) : '-'), 0, false);
  row('Prosody offline store after the run (messages / bytes)', (r) => (full(r) && r.offlineAfter
    ? `${fmt(r.offlineAfter.items)} / ${fmt(r.offlineAfter.bytes)}` : '-'), 0, false);
  L.push('');
  L.push('"Session holder" is the process that holds the web sessions: imgw in the imgw columns, ' +
    `Prosody in the Prosody column. RSS per session is (idle RSS − RSS before) / sessions up, ` +
    `idle RSS and CPU taken ${settle} s after the last session opened. ` +
    'CPU is utime+stime from /proc over the window from the first send until the last message ' +
    'arrived (or 2 s without progress); PostgreSQL\'s is the postmaster and all its backends. ' +
    'Latency is from just before the sender\'s write to the ' +
    'receiving load process\'s handler, both on this machine\'s clock.');
  for (const g of results.filter(gw)) {
    L.push('');
    L.push(`Targets (${g.kind} column):`);
    const t = (ok, text) => L.push(`- ${ok === null ? 'n/a' : ok ? 'met' : '**missed**'}: ${text}`);
    t(g.rss.holderPerSessionKiB <= 8, `≤ 8 KiB gateway RSS per idle session — ${fmt(g.rss.holderPerSessionKiB, 2)} KiB`);
    if (g.load) {
      t(R >= 2000 ? g.load.latencyMs.p99 <= 5 && g.load.lost === 0 : null,
        `p99 ≤ 5 ms at 2,000 msg/s — p99 ${fmt(g.load.latencyMs.p99, 2)} ms at ${fmt(g.load.deliveredPerSec)} msg/s delivered` +
        (R < 2000 ? ' (this run offered less than 2,000 msg/s)' : ''));
      const limit = g.kind === 'imgw-full' ? 25 : R >= 5000 ? 10 : 15;
      t(g.kind === 'imgw' && R < 2000 ? null : g.load.cpuUsPerMsg.imgw <= limit,
        `gateway CPU per message ≤ ${limit} µs — ${fmt(g.load.cpuUsPerMsg.imgw, 1)} µs`);
      if (p && p.load) {
        const both = g.load.cpuUsPerMsg.imgw + g.load.cpuUsPerMsg.prosody;
        t(g.kind === 'imgw' ? both <= 0.9 * p.load.cpuUsPerMsg.prosody : null,
          `gateway + XMPP server ≤ 0.9 × the XMPP server alone — ${fmt(both, 1)} against ` +
          `${fmt(p.load.cpuUsPerMsg.prosody, 1)} µs (${ratio(both, p.load.cpuUsPerMsg.prosody)})`);
      }
      if (g.kind === 'imgw-full' && g.offlineAfter) {
        t(g.offlineAfter.items === (g.offlineBefore?.items ?? 0),
          `nothing stored offline for web-online users — ${fmt(g.offlineAfter.items)} message(s) in Prosody's offline store`);
      }
    }
  }
  for (const r of results) {
    if (r.problems.length) {
      L.push('');
      L.push(`Problems seen in the ${r.kind} phase:`);
      for (const pr of r.problems) L.push(`- ${pr}`);
    }
  }
  return L.join('\n');
}

async function main() {
  const baseDir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-bench-'));
  const meta = {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineInfo(),
    prosody: prosodyVersion(),
    gateway: null,
    params: { sessions: N, rate: R, duration: S, senders: M, mode: opt.mode, perProc, concurrency, warmup, settle },
  };
  const kinds = KINDS.filter((k) => kindsAsked.includes(k));
  if (kinds.some((k) => k !== 'prosody')) {
    // Run a private copy: the gateway may be rebuilt in the tree while we run, and the
    // report must name the binary that was measured.
    gatewayBinary = path.join(baseDir, 'imgw-under-test');
    try {
      await fs.copyFile(opt.gateway, gatewayBinary);
      await fs.chmod(gatewayBinary, 0o755);
    } catch (err) {
      log(`cannot copy the gateway binary ${opt.gateway}: ${err.message}`);
      await fs.rm(baseDir, { recursive: true, force: true });
      process.exit(1);
    }
    meta.gateway = await gatewayBuild(gatewayBinary);
  }
  const results = [];
  let failed = false;
  for (const kind of kinds) {
    try {
      results.push(await runPhase(kind, baseDir));
    } catch (err) {
      failed = true;
      log(`${kind} phase failed: ${err.stack || err}`);
      await stopAll();
    }
    // Let the kernel finish closing the phase's sockets before the next one.
    await sleep(1000);
  }
  await stopAll();
  if (results.length) console.log(report(results, meta));
  if (opt.json) await fs.writeFile(opt.json, JSON.stringify({ meta, results }, null, 2) + '\n');
  if (opt.keep || failed) log(`configs and logs kept in ${baseDir}`);
  else await fs.rm(baseDir, { recursive: true, force: true });
  process.exit(failed ? 1 : 0);
}

main().catch(async (err) => {
  log(err.stack || String(err));
  await stopAll();
  process.exit(1);
});
