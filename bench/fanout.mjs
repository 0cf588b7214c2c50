#!/usr/bin/env node
// Fan-out (issue 12): frames per second the gateway delivers to many WebSocket sessions,
// against a bare libwebsockets push server (bench/barepush.c: same lws, same libuv loop,
// same write policy, nothing else) in the same run.
//
//   node bench/fanout.mjs [--sessions 19800] [--tabs 16] [--tab-rates 2000,max]
//                         [--tab-messages 20000] [--duration 5] [--bursts 5] ...
//
// Both servers run at once, each holding the same sessions: one user `t0` with --tabs
// sessions, and --sessions users `u0`.. with one session each. imgw runs in component
// mode, fed by a synthetic XEP-0114 server (this process) so the XMPP server is not the
// limit; barepush is fed lines on its control socket. Every message is one text frame of
// the same size on both (the bare frame is written like imgw's `msg` frame).
//
// Scenarios (the servers alternate, imgw first, in every repetition):
//   tabs   messages to t0 at each offered rate of --tab-rates for --duration s, or with
//          `max` --tab-messages written at once (as fast as the server takes them);
//   burst  one message to each of the --sessions users, written at once (imgw: one stanza
//          per user; bare: one control line per user; bare-all: one `*` line, i.e. the
//          broadcast a bare push server would do), repeated --bursts times.
// Per measurement: frames received, every session checked for exactly one copy of each
// frame, frames/s from the first to the last frame received (and from the first write),
// latency p50/p99, CPU seconds of the server process, of the load processes, of this
// process and of the rest of the machine, and CPU µs per frame of the server.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { forkChild } from './lib/child.mjs';
import { startGateway } from './lib/gateway.mjs';
import { cpuSecondsOf, machineBusySeconds, machineInfo } from './lib/procstat.mjs';
import { fmt, summarize } from './lib/stats.mjs';
import { startComponentServer } from './lib/component-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const { values: opt } = parseArgs({
  options: {
    sessions: { type: 'string', default: '19800' },
    tabs: { type: 'string', default: '16' },
    'tab-rates': { type: 'string', default: '2000,max' },
    'tab-messages': { type: 'string', default: '20000' },
    duration: { type: 'string', default: '5' },
    bursts: { type: 'string', default: '5' },
    'bare-all': { type: 'string', default: 'yes' },
    repeat: { type: 'string', default: '3' },
    scenarios: { type: 'string', default: 'tabs,burst' },
    receivers: { type: 'string', default: '4' },
    'queue-max': { type: 'string', default: '32768' },
    settle: { type: 'string', default: '5' },
    'quiet-wait': { type: 'string', default: '0' },
    attach: { type: 'string' },
    'attach-wait': { type: 'string', default: '500' },
    gateway: { type: 'string', default: path.join(repo, 'build/gateway/imgw') },
    barepush: { type: 'string', default: path.join(repo, 'build/bench/barepush') },
    json: { type: 'string' },
  },
});
const N = Number(opt.sessions);
const TABS = Number(opt.tabs);
const TAB_RATES = opt['tab-rates'].split(',').map((r) => (r === 'max' ? 'max' : Number(r)));
const TAB_MSGS = Number(opt['tab-messages']);
const S = Number(opt.duration);
const BURSTS = Number(opt.bursts);
const REPEAT = Number(opt.repeat);
const SCEN = new Set(opt.scenarios.split(','));
const NREC = Number(opt.receivers);
const QMAX = Number(opt['queue-max']);
const QUIET = Number(opt['quiet-wait']);
if (!(N >= 0 && N + TABS <= 19850) || !(TABS >= 1 && TABS <= 1000) || !(NREC >= 1) || !(QMAX >= 4) ||
    TAB_RATES.some((r) => r !== 'max' && !(r > 0))) {
  console.error('fanout: bad options (at most 19,850 sessions per server: the open-file limit)');
  process.exit(2);
}
const DOMAIN = 'bench.localhost';
const GW_DOMAIN = `gw.${DOMAIN}`;
const SECRET = 'fanout-secret';
const log = (...a) => console.error(`[fanout ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now();

/** Starts bench/barepush; resolves with its ports once it printed them. */
function startBare(binary) {
  const child = spawn(binary, ['--queue-max', String(QMAX)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let exited = null;
  const exit = new Promise((r) => child.on('exit', (code, sig) => { exited = { code, sig }; r(exited); }));
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('barepush did not start')), 10000);
    child.on('error', reject);
    child.stdout.on('data', (d) => {
      out += d.toString();
      const m = /^ws (\d+) control (\d+)$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        pid: child.pid, url: `ws://127.0.0.1:${m[1]}`, controlPort: Number(m[2]),
        async stop() {
          if (!exited) child.kill('SIGTERM');
          const t = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 10000);
          await exit;
          clearTimeout(t);
        },
      });
    });
  });
}

function connectControl(port) {
  return new Promise((resolve, reject) => {
    import('node:net').then(({ default: net }) => {
      const s = net.connect(port, '127.0.0.1', () => { s.setNoDelay(true); resolve(s); });
      s.on('error', reject);
    });
  });
}

// The message as each server carries it. imgw gets a chat stanza and writes its `msg`
// frame; barepush gets that frame's text, byte for byte the same shape: same members,
// an 18-digit id and a 13-digit ts like imgw's.
let idSeq = 730000000000000000n;
const body = (run, seq, target, ts) => `bench ${run} 0 ${seq} ${target} ${ts}`;
const stanza = (user, b, id) =>
  `<message from='app0@${DOMAIN}/r' to='${user}@${GW_DOMAIN}' type='chat' id='${id}'><body>${b}</body></message>`;
const bareLine = (group, user, b) =>
  `${group} {"op":"msg","id":"${idSeq++}","conv":"app0@${DOMAIN}","from":"app0@${DOMAIN}",` +
  `"to":"${user}@${GW_DOMAIN}","body":"${b}","kind":"text","ts":${Date.now()},"open":false}\n`;

/** Writes `text`, waiting for 'drain' when the socket's buffer is full. */
function writeAll(sock, text) {
  return new Promise((resolve) => {
    if (sock.write(text)) resolve();
    else sock.once('drain', resolve);
  });
}

/** Writes `count` messages at `rate` msg/s (or all at once when rate is 'max'), built by make(seq, ts). */
async function offer(sock, rate, count, make) {
  const t0 = performance.now();
  let sent = 0;
  while (sent < count) {
    const due = rate === 'max' ? count : Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate));
    let chunk = '';
    const ts = nowMs().toFixed(3);
    for (; sent < due && chunk.length < (1 << 20); sent++) chunk += make(sent, ts);
    if (chunk) await writeAll(sock, chunk);
    if (sent < count && rate !== 'max') await sleep(1);
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

async function main() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-fanout-'));
  const xs = await startComponentServer({ domain: GW_DOMAIN, secret: SECRET });
  const gw = await startGateway({
    binary: opt.gateway, dir, xmppPort: xs.port, xmppDomain: DOMAIN,
    componentDomain: GW_DOMAIN, componentSecret: SECRET,
    extra: { log_level: 'warning', max_sessions_per_user: String(TABS), session_queue_max: String(QMAX) },
  });
  const bare = await startBare(opt.barepush);
  const ctl = await connectControl(bare.controlPort);
  const receivers = [];
  const rows = [];
  const attached = [];
  try {
    const link = (await xs.waitLinks(1, 15000)) ? xs.links[0] : null;
    if (!link) throw new Error('the gateway did not complete the handshake');
    for (let i = 0; i < NREC; i++) {
      receivers.push(forkChild(path.join(here, 'lib/fanout-proc.mjs'), {
        localAddress: `127.0.10.${i + 1}`, concurrency: 100, openTimeoutMs: 60000,
      }, { heapMiB: 4096 }));
    }
    const servers = { imgw: { url: gw.url, pid: gw.pid }, bare: { url: bare.url, pid: bare.pid } };
    for (const kind of ['imgw', 'bare']) {
      const asks = [];
      receivers.forEach((r, i) => {
        // Tabs spread over the load processes, so no one process receives them all.
        const tabs = Math.floor(((i + 1) * TABS) / NREC) - Math.floor((i * TABS) / NREC);
        if (SCEN.has('tabs') && tabs > 0) {
          asks.push(r.ask({ cmd: 'open', tag: `${kind}-tabs`, kind, url: servers[kind].url, prefix: 't', first: 0, count: 1, tabs }, 'opened'));
        }
      });
      const tabsUp = (await Promise.all(asks)).reduce((s, o) => s + o.ok, 0);
      let burstUp = 0;
      if (SCEN.has('burst')) {
        const opened = await Promise.all(receivers.map((r, i) => {
          const first = Math.floor((i * N) / NREC);
          const next = Math.floor(((i + 1) * N) / NREC);
          return r.ask({ cmd: 'open', tag: `${kind}-burst`, kind, url: servers[kind].url, prefix: 'u', first, count: next - first, tabs: 1 }, 'opened');
        }));
        burstUp = opened.reduce((s, o) => s + o.ok, 0);
        for (const o of opened) if (o.failed) log(`${kind}: failed opens ${JSON.stringify(o.failures)}`);
      }
      log(`${kind}: ${tabsUp} tab sessions and ${burstUp} single sessions up`);
      if ((SCEN.has('tabs') && tabsUp !== TABS) || (SCEN.has('burst') && burstUp !== N)) throw new Error(`${kind}: not every session opened`);
    }
    await sleep(Number(opt.settle) * 1000);

    const ownPids = [gw.pid, bare.pid, process.pid, ...receivers.map((r) => r.pid)];
    /** One measured window: `send` writes the messages; `expect` frames in all should arrive. */
    const measure = async (row, tag, expectPerSession, expectTotal, serverPid, send) => {
      const run = `r${rows.length}`;
      if (QUIET > 0) row.otherBefore = await waitForQuiet(ownPids);
      await Promise.all(receivers.map((r) => r.ask({ cmd: 'reset', tag, run, expect: expectPerSession }, 'reset')));
      const pids = { server: [serverPid], bench: [process.pid], load: receivers.map((r) => r.pid) };
      const c0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSecondsOf(p)]));
      const b0 = machineBusySeconds();
      let att = null;
      if (opt.attach) {
        att = spawn('sh', ['-c', opt.attach.replaceAll('{pid}', String(serverPid)).replaceAll('{name}', `${row.scenario}-${row.kind}-${rows.length}`)], { stdio: 'inherit' });
        attached.push(att);
        await sleep(Number(opt['attach-wait']));
      }
      const t0 = nowMs();
      await send(run);
      const sentAt = nowMs();
      let got = 0;
      for (let last = -1, quiet = Date.now(); ;) {
        const counts = await Promise.all(receivers.map((r) => r.ask({ cmd: 'count', tag }, 'count')));
        got = counts.reduce((s, c) => s + c.frames, 0);
        if (got >= expectTotal) break;
        if (got !== last) { last = got; quiet = Date.now(); }
        if (Date.now() - quiet > 2000) break;
        await sleep(10);
      }
      if (att) {
        att.kill('SIGINT');
        await new Promise((r) => (att.exitCode !== null ? r() : att.once('exit', r)));
      }
      const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSecondsOf(p) - c0[k]]));
      const rest = machineBusySeconds() - b0 - cpu.server - cpu.bench - cpu.load;
      const st = await Promise.all(receivers.map((r) => r.ask({ cmd: 'collect', tag }, 'stats')));
      const sum = (k) => st.reduce((s, x) => s + x[k], 0);
      const first = Math.min(...st.map((x) => x.first));
      const last = Math.max(...st.map((x) => x.last));
      const lat = summarize(st.map((x) => x.lat));
      Object.assign(row, {
        expected: expectTotal, frames: sum('frames'), dups: sum('dups'), misrouted: sum('misrouted'),
        short: sum('short'), over: sum('over'), closes: sum('closes'), up: sum('up'), sessions: sum('sessions'),
        bytesPerFrame: sum('bytes') / Math.max(1, sum('frames')),
        firstToLast: (last - first) / 1000, writeToLast: (last - t0) / 1000, writeSeconds: (sentAt - t0) / 1000,
        p50: lat.p50, p99: lat.p99, cpu, rest,
      });
      row.fps = row.frames / row.firstToLast;
      row.fpsWrite = row.frames / row.writeToLast;
      row.usPerFrame = (cpu.server * 1e6) / row.frames;
      rows.push(row);
      log(`${row.scenario} ${row.kind} ${row.rate ?? ''}: ${row.frames}/${expectTotal} frames, ${fmt(row.fps)} frames/s, ` +
        `server ${fmt(cpu.server, 2)} CPU s (${fmt(row.usPerFrame, 2)} µs/frame), dups ${row.dups}, short ${row.short}, rest ${fmt(rest, 2)}`);
      await sleep(1000);
    };

    const tabsToUser = (kind) => (run, rate, count) => (kind === 'imgw'
      ? offer(link, rate, count, (seq, ts) => stanza('t0', body(run, seq, 0, ts), `${run}.${seq}`))
      : offer(ctl, rate, count, (seq, ts) => bareLine('t0', 't0', body(run, seq, 0, ts))));
    for (let rep = 0; rep < REPEAT && SCEN.has('tabs'); rep++) {
      for (const rate of TAB_RATES) {
        const count = rate === 'max' ? TAB_MSGS : Math.round(rate * S);
        for (const kind of ['imgw', 'bare']) {
          await measure({ scenario: 'tabs', kind, rep, rate }, `${kind}-tabs`, count, count * TABS, servers[kind].pid,
            (run) => tabsToUser(kind)(run, rate, count));
        }
      }
    }
    for (let rep = 0; rep < BURSTS && SCEN.has('burst'); rep++) {
      await measure({ scenario: 'burst', kind: 'imgw', rep }, 'imgw-burst', 1, N, gw.pid,
        (run) => offer(link, 'max', N, (i, ts) => stanza(`u${i}`, body(run, i, i, ts), `${run}.${i}`)));
      await measure({ scenario: 'burst', kind: 'bare', rep }, 'bare-burst', 1, N, bare.pid,
        (run) => offer(ctl, 'max', N, (i, ts) => bareLine(`u${i}`, `u${i}`, body(run, i, i, ts))));
      // One frame for everybody (TARGET '*'); the t0 tabs get it too but do not count it.
      if (opt['bare-all'] !== 'no') await measure({ scenario: 'burst', kind: 'bare-all', rep }, 'bare-burst', 1, N, bare.pid,
        (run) => writeAll(ctl, bareLine('*', 'all', body(run, 'all', '*', nowMs().toFixed(3)))));
    }
    report(rows);
    if (opt.json) await fs.writeFile(opt.json, JSON.stringify({ argv: process.argv.slice(2), rows }, null, 1));
  } finally {
    for (const a of attached) if (a.exitCode === null) a.kill('SIGKILL');
    await Promise.all(receivers.map((r) => r.ask({ cmd: 'close' }, 'closed').catch(() => r.kill())));
    ctl.destroy();
    await gw.stop();
    await bare.stop();
    xs.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

function report(rows) {
  const m = machineInfo();
  console.log(`### Fan-out run of ${new Date().toISOString().slice(0, 19)}Z\n`);
  console.log(`Command: \`node bench/fanout.mjs ${process.argv.slice(2).join(' ')}\`; ${m.nproc} CPUs (${m.cpu}), ` +
    `${N} single sessions + ${TABS} tabs of one user per server, ${NREC} load processes, queue bound ${QMAX} frames on both servers.\n`);
  console.log('| scenario | server | rep | offered | frames / expected | exactly once | B/frame | first→last s | frames/s | frames/s from write | p50 / p99 ms | server CPU s | server µs/frame | load / bench / rest CPU s |');
  console.log('|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const once = r.dups === 0 && r.short === 0 && r.over === 0 && r.misrouted === 0 && r.closes === 0 ? 'yes'
      : `NO (dup ${r.dups}, short ${r.short}, over ${r.over}, misrouted ${r.misrouted}, closed ${r.closes})`;
    console.log(`| ${r.scenario} | ${r.kind} | ${r.rep} | ${r.rate ?? 'burst'} | ${fmt(r.frames)} / ${fmt(r.expected)} | ${once} | ` +
      `${fmt(r.bytesPerFrame, 1)} | ${fmt(r.firstToLast, 3)} | ${fmt(r.fps)} | ${fmt(r.fpsWrite)} | ${fmt(r.p50, 1)} / ${fmt(r.p99, 1)} | ` +
      `${fmt(r.cpu.server, 2)} | ${fmt(r.usPerFrame, 2)} | ${fmt(r.cpu.load, 2)} / ${fmt(r.cpu.bench, 2)} / ${fmt(r.rest, 2)} |`);
  }
  console.log('\nimgw / bare: frames/s ratio of each repetition (the servers ran back to back in it), its median; ' +
    'CPU per frame over all repetitions (sum of CPU / sum of frames: ticks are 10 ms):\n');
  console.log('| scenario | offered | imgw frames/s (median) | bare frames/s (median) | ratio per repetition | **median ratio** | imgw µs/frame | bare µs/frame | bare / imgw CPU per frame |');
  console.log('|---|---:|---:|---:|---|---:|---:|---:|---:|');
  const keys = [...new Set(rows.map((r) => `${r.scenario}|${r.rate ?? 'burst'}`))];
  for (const k of keys) {
    const [scenario, rate] = k.split('|');
    const of = (kind) => rows.filter((r) => r.scenario === scenario && String(r.rate ?? 'burst') === rate && r.kind === kind);
    const perFrame = (rs) => (rs.reduce((s, r) => s + r.cpu.server, 0) * 1e6) / rs.reduce((s, r) => s + r.frames, 0);
    for (const bk of scenario === 'burst' ? ['bare', 'bare-all'] : ['bare']) {
      const im = of('imgw');
      const ba = of(bk);
      if (!ba.length) continue;
      const ratios = im.filter((r) => ba.some((b) => b.rep === r.rep)).map((r) => r.fps / ba.find((b) => b.rep === r.rep).fps);
      const ui = perFrame(im);
      const ub = perFrame(ba);
      console.log(`| ${scenario} (vs ${bk}) | ${rate} | ${fmt(median(im.map((r) => r.fps)))} | ${fmt(median(ba.map((r) => r.fps)))} | ` +
        `${ratios.map((x) => fmt(x, 2)).join(', ')} | **${fmt(median(ratios), 2)}×** | ${fmt(ui, 2)} | ${fmt(ub, 2)} | ${fmt(ub / ui, 2)}× |`);
    }
  }
  console.log('\nframes/s: frames received / time from the first to the last frame received (all load processes, one clock). ' +
    'CPU in 10 ms clock ticks from /proc; "rest" is the machine minus the servers, the load processes and this process.');
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
