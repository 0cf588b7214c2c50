// Start the imgw gateway for a test: a config file in a temp dir, the binary from the
// build tree (IMGW_GATEWAY_BIN overrides), readiness awaited through GET /health.
//
// Usage:
//   import { startImgw } from '../lib/imgw.mjs';
//   const gw = await startImgw({ prosody: p, config: { dev_mode: 'yes' } });
//   gw.wsUrl            // ws://127.0.0.1:PORT/ws
//   await gw.health()   // { status, link, sessions, users, link_queue }
//   await gw.waitLink('down', 5000)
//   const { code, signal } = await gw.stop();   // SIGTERM, awaits exit (bounded)
//   await gw.start();  await gw.cleanup();      // same port and config
//
// The gateway's log goes to DIR/imgw.log (logText()). IMGW_KEEP_TMP=1 keeps DIR.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GATEWAY_BIN = process.env.IMGW_GATEWAY_BIN || path.join(REPO, 'build', 'gateway', 'imgw');

export function gatewayBuilt() {
  return fs.existsSync(GATEWAY_BIN);
}

async function until(what, ms, probe) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (${last.message})` : ''}`);
}

/**
 * @param {{ prosody?: { componentPort: number, domain: string },
 *           componentDomain?: string, secret?: string,
 *           config?: Record<string, string|number>, waitLinkUp?: boolean,
 *           env?: Record<string,string> }} o
 */
export async function startImgw(o = {}) {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'imgw-gw-'));
  const port = Number(o.config?.listen_port ?? await freePort());
  const domain = o.prosody?.domain ?? 'shop.test';
  const settings = {
    xmpp_host: '127.0.0.1',
    xmpp_port: o.prosody?.componentPort ?? 1,
    component_domain: o.componentDomain ?? `gw.${domain}`,
    component_secret: o.secret ?? 's3cret',
    xmpp_domain: domain,
    listen_host: '127.0.0.1',
    listen_port: port,
    dev_mode: 'yes',
    // Component mode unless a test asks for samejid (which needs the companion module).
    mode: 'component',
    allowed_origins: `http://127.0.0.1:${port}, http://localhost:${port}`,
    allow_no_origin: 'yes',
    web_root: path.join(REPO, 'clients', 'web'),
    reconnect_min_ms: 50,
    reconnect_max_ms: 500,
    log_level: 'info',
    ...o.config,
  };
  const confPath = path.join(dir, 'imgw.conf');
  fs.writeFileSync(confPath, Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  const logPath = path.join(dir, 'imgw.log');
  let child = null;
  let exited = null;

  const gw = {
    dir, port, confPath, settings,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    httpUrl: `http://127.0.0.1:${port}`,
    get pid() { return child?.pid; },
    logText: () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8') : ''),
    async health() {
      const res = await fetch(`${gw.httpUrl}/health`);
      return res.json();
    },
    async waitLink(state, ms = 10000) {
      return until(`imgw link ${state}`, ms, async () => (await gw.health()).link === state);
    },
    async start() {
      const fd = fs.openSync(logPath, 'a');
      child = spawn(GATEWAY_BIN, ['--config', confPath], { stdio: ['ignore', fd, fd], env: { ...process.env, ...o.env } });
      fs.closeSync(fd);
      exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      const early = exited.then((e) => { throw new Error(`imgw exited early (${JSON.stringify(e)}):\n${gw.logText().slice(-3000)}`); });
      early.catch(() => {});
      try {
        await Promise.race([early, until('imgw health', 10000, async () => (await gw.health()).status)]);
        if (o.waitLinkUp !== false && o.prosody) await Promise.race([early, gw.waitLink('up', 10000)]);
      } catch (err) {
        await gw.stop();
        throw err;
      }
    },
    /** SIGTERM (or signal) and wait for the exit, bounded; SIGKILL after 10 s. */
    async stop(signal = 'SIGTERM') {
      if (!child || child.exitCode !== null || child.signalCode !== null) return exited ? exited : { code: null };
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
    async cleanup() {
      await gw.stop();
      // A sanitizer build reports memory errors in the log; never let them pass silently.
      const log = gw.logText();
      const bad = log.match(/ERROR: (Address|Leak)Sanitizer.*|runtime error:.*/);
      if (bad) throw new Error(`imgw sanitizer report in ${logPath}: ${bad[0]}\n${log.slice(log.indexOf(bad[0]), log.indexOf(bad[0]) + 3000)}`);
      if (!process.env.IMGW_KEEP_TMP) await fs.promises.rm(dir, { recursive: true, force: true });
    },
  };
  await gw.start();
  return gw;
}
