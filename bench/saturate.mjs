#!/usr/bin/env node
// Saturation: how many messages per second one gateway delivers to browsers when the XMPP
// server is not the limit (issue 12). This process is a synthetic XEP-0114 server: it
// accepts the gateway's component connection, answers the handshake and then writes
// chat stanzas to web users at a fixed offered rate, with no routing work of its own.
// Load processes (bench/lib/receiver-proc.mjs) hold the web sessions and count what
// arrives. The gateway runs in component mode with development-mode hellos.
//
//   node bench/saturate.mjs [--sessions 1000] [--rates 10000,20000,40000] [--duration 10]
//
// For each offered rate it reports delivered msg/s, lost messages, latency, and the CPU
// seconds of the gateway, of this process (the synthetic server) and of the load
// processes over the window; "msg/s per gateway core" = delivered / gateway CPU seconds,
// i.e. what one core would deliver if the gateway were the only thing limiting it.

import os from 'node:os';
import path from 'node:path';
import fs from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { forkChild } from './lib/child.mjs';
import { startComponentServer } from './lib/component-server.mjs';
import { startGateway } from './lib/gateway.mjs';
import { cpuSecondsOf, machineBusySeconds } from './lib/procstat.mjs';
import { fmt, summarize } from './lib/stats.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..');
const { values: opt } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1000' },
    rates: { type: 'string', default: '10000,20000,40000' },
    duration: { type: 'string', default: '10' },
    receivers: { type: 'string', default: '2' },
    gateway: { type: 'string', default: path.join(repo, 'build/gateway/imgw') },
  },
});
const N = Number(opt.sessions);
const RATES = opt.rates.split(',').map(Number);
const S = Number(opt.duration);
const NREC = Number(opt.receivers);
const DOMAIN = 'bench.localhost';
const GW_DOMAIN = `gw.${DOMAIN}`;
const SECRET = 'saturation-secret';
const log = (...a) => console.error(`[saturate ${new Date().toISOString().slice(11, 19)}]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowMs = () => performance.timeOrigin + performance.now();

/**
 * Writes `rate` msg/s for `seconds` to random users, in chunks every millisecond, and
 * stops early rather than buffer without bound when the gateway does not read.
 */
function blast(sock, run, rate, seconds) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const total = Math.round(rate * seconds);
    let sent = 0;
    let stalledMs = 0;
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
      if (sock.writableLength > 8 * 1024 * 1024) {
        stalledMs++;
      } else {
        let chunk = '';
        const ts = nowMs().toFixed(3);
        while (sent < due) {
          const target = Math.floor(Math.random() * N);
          chunk += `<message from='app0@${DOMAIN}/r' to='u${target}@${GW_DOMAIN}' type='chat' id='${run}.${sent}'>` +
            `<body>bench ${run} 0 ${sent} ${target} ${ts}</body></message>`;
          sent++;
        }
        if (chunk) sock.write(chunk);
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

async function main() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'imgw-saturate-'));
  const xs = await startComponentServer({ domain: GW_DOMAIN, secret: SECRET });
  const gw = await startGateway({
    binary: opt.gateway, dir, xmppPort: xs.port, xmppDomain: DOMAIN,
    componentDomain: GW_DOMAIN, componentSecret: SECRET,
    extra: { log_level: 'warning' },
  });
  const receivers = [];
  try {
    const link = (await xs.waitLinks(1, 15000)) ? xs.links[0] : null;
    if (!link) throw new Error('the gateway did not complete the handshake');
    for (let i = 0; i < NREC; i++) {
      const first = Math.floor((i * N) / NREC);
      const next = Math.floor(((i + 1) * N) / NREC);
      receivers.push(forkChild(path.join(here, 'lib/receiver-proc.mjs'), {
        kind: 'imgw', url: gw.url, first, count: next - first, prefix: 'u', domain: DOMAIN,
        password: 'x', localAddress: `127.0.9.${i + 1}`, concurrency: 100, openTimeoutMs: 60000,
      }, { heapMiB: 2048 }));
    }
    const opened = await Promise.all(receivers.map((r) => r.ask({ cmd: 'open' }, 'opened')));
    const up = opened.reduce((s, o) => s + o.ok, 0);
    log(`${up}/${N} sessions up`);
    if (up !== N) throw new Error('not every session opened');
    await sleep(2000);
    const rows = [];
    for (const [k, rate] of RATES.entries()) {
      const run = `s${k}`;
      const start = nowMs();
      await Promise.all(receivers.map((r) => r.ask({ cmd: 'reset', run, start }, 'reset')));
      const pids = { gw: [gw.pid], server: [process.pid], receivers: receivers.map((r) => r.pid) };
      const c0 = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, cpuSecondsOf(p)]));
      const b0 = machineBusySeconds();
      const w0 = Date.now();
      log(`offering ${rate} msg/s for ${S} s`);
      const done = await blast(link, run, rate, S);
      // Until everything arrived or nothing new came for 2 s.
      let got = -1;
      for (let last = -2, quiet = Date.now(); ;) {
        const counts = await Promise.all(receivers.map((r) => r.ask({ cmd: 'count' }, 'count')));
        got = counts.reduce((s, c) => s + c.unique, 0);
        if (got >= done.sent) break;
        if (got !== last) { last = got; quiet = Date.now(); }
        if (Date.now() - quiet > 2000) break;
        await sleep(20);
      }
      const win = (Date.now() - w0) / 1000;
      const cpu = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, cpuSecondsOf(p) - c0[n]]));
      const other = machineBusySeconds() - b0 - cpu.gw - cpu.server - cpu.receivers;
      const stats = await Promise.all(receivers.map((r) => r.ask({ cmd: 'collect' }, 'stats')));
      const lat = summarize(stats.map((s) => s.lat));
      const delivered = stats.reduce((s, x) => s + x.unique, 0);
      const upAfter = stats.reduce((s, x) => s + x.up, 0);
      rows.push({ rate, sent: done.sent, sendSeconds: done.seconds, stalledMs: done.stalledMs, delivered, win,
        cpu, other, lat, upAfter, dups: stats.reduce((s, x) => s + x.dups, 0) });
      log(`delivered ${delivered}/${done.sent} in ${fmt(win, 1)} s, gateway ${fmt(cpu.gw, 2)} CPU s, p99 ${fmt(lat.p99, 1)} ms`);
      await sleep(2000);
    }
    console.log(`### Saturation run of ${new Date().toISOString().slice(0, 19)}Z\n`);
    console.log(`Command: \`node bench/saturate.mjs ${process.argv.slice(2).join(' ')}\` (${N} sessions, ` +
      `${NREC} load processes, synthetic XEP-0114 server in the orchestrator)\n`);
    console.log('| offered msg/s | sent | delivered | delivered msg/s (window) | p50 / p99 ms | gateway CPU s | msg/s per gateway core | server / load / rest of machine CPU s | sessions up after |');
    console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const r of rows) {
      console.log(`| ${fmt(r.rate)} | ${fmt(r.sent)} | ${fmt(r.delivered)} | ${fmt(r.delivered / r.win)} | ` +
        `${fmt(r.lat.p50, 2)} / ${fmt(r.lat.p99, 1)} | ${fmt(r.cpu.gw, 2)} | ${fmt(r.delivered / r.cpu.gw)} | ` +
        `${fmt(r.cpu.server, 2)} / ${fmt(r.cpu.receivers, 2)} / ${fmt(r.other, 2)} | ${fmt(r.upAfter)} |`);
    }
    console.log(`\nWindow: from the first write until everything arrived (or 2 s without progress). ` +
      `Sender stalls (its output buffer above 8 MiB, the gateway not reading): ${rows.map((r) => r.stalledMs).join(', ')} ms.`);
  } finally {
    await Promise.all(receivers.map((r) => r.ask({ cmd: 'close' }, 'closed').catch(() => {})));
    await gw.stop();
    xs.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
