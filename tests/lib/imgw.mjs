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
//   await gw.kill();                            // SIGKILL, as in a crash
//   await gw.start();  await gw.cleanup();      // same port and config
//
// The gateway's log goes to DIR/imgw.log (logText()). IMGW_KEEP_TMP=1 keeps DIR.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from './ports.mjs';
import { until } from './bounded.mjs';
import { spawnTracked } from './procs.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GATEWAY_BIN = process.env.IMGW_GATEWAY_BIN || path.join(REPO, 'build', 'gateway', 'imgw');

export function gatewayBuilt() {
  return fs.existsSync(GATEWAY_BIN);
}

/**
 * @param {{ prosody?: { componentPort: number, domain: string },
 *           componentDomain?: string, secret?: string,
 *           config?: Record<string, string|number>, waitLinkUp?: boolean, waitStore?: boolean,
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
      const res = await fetch(`${gw.httpUrl}/health`, { signal: AbortSignal.timeout(5000) });
      return res.json();
    },
    /** The value of one /metrics line (NaN when absent). */
    async metric(name) {
      const text = await (await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : NaN;
    },
    async waitLink(state, ms = 10000) {
      return until(`imgw :${port} link ${state}`, ms, async () => (await gw.health()).link === state, gw.logText);
    },
    async start() {
      const fd = fs.openSync(logPath, 'a');
      try {
        child = spawnTracked(GATEWAY_BIN, ['--config', confPath],
          { stdio: ['ignore', fd, fd], env: { ...process.env, ...o.env } }, `imgw :${port}`);
      } finally {
        fs.closeSync(fd);
      }
      exited = child.exited;
      const early = exited.then((e) => { throw new Error(`imgw :${port} exited early (${JSON.stringify(e)}):\n${gw.logText().slice(-3000)}`); });
      early.catch(() => {});
      try {
        await Promise.race([early, until(`imgw :${port} health`, 10000, async () => (await gw.health()).status, gw.logText)]);
        if (o.waitLinkUp !== false && o.prosody) await Promise.race([early, gw.waitLink('up', 10000)]);
      } catch (err) {
        await gw.stop();
        throw err;
      }
    },
    /** SIGTERM (or signal) and wait for the exit, bounded; SIGKILL after 10 s. */
    async stop(signal = 'SIGTERM') {
      if (!child || !child.alive()) return exited ? exited : { code: null };
      return child.stopWith(signal, 10000, gw.logText);
    },
    /** SIGKILL, as in a crash; resolves once the process is gone. */
    async kill() {
      return gw.stop('SIGKILL');
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
  // With PostgreSQL configured, the first start also waits for the store's connection: a
  // send before it (with no spool_dir) is refused store_unavailable, which a test that
  // did not stop the database does not expect. (Restarts do not wait: a test or the soak
  // may restart a gateway while the database is down.)
  if (o.config?.pg_conninfo && o.waitStore !== false) {
    try {
      await until(`imgw :${port} store up`, 20000, async () => (await gw.metric('imgw_store_up')) === 1, gw.logText);
    } catch (err) {
      await gw.stop();
      throw err;
    }
  }
  return gw;
}
