// Starts the imgw gateway binary for a benchmark phase, in component mode against a
// bench Prosody, with development-mode hellos so load clients need no tickets.

import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { freePort, waitForPort } from '../../tests/lib/ports.mjs';

/**
 * @param {object} opts
 * @param {string} opts.binary            path to build/gateway/imgw
 * @param {string} opts.dir               working dir for config and log
 * @param {number} opts.xmppPort          Prosody's component port
 * @param {string} opts.xmppDomain        Prosody VirtualHost
 * @param {string} opts.componentDomain   e.g. gw.<xmppDomain>
 * @param {string} opts.componentSecret
 * @param {Record<string,string>} [opts.extra]  more config keys (override the defaults)
 */
export async function startGateway(opts) {
  await fs.mkdir(opts.dir, { recursive: true });
  const listenPort = await freePort();
  const conf = {
    // Component mode: web users are user@<component domain>, so no Prosody plugin is
    // needed and XMPP senders address them there.
    mode: 'component',
    xmpp_host: '127.0.0.1',
    xmpp_port: String(opts.xmppPort),
    component_domain: opts.componentDomain,
    component_secret: opts.componentSecret,
    xmpp_domain: opts.xmppDomain,
    listen_host: '127.0.0.1',
    listen_port: String(listenPort),
    dev_mode: 'yes',
    allow_no_origin: 'yes',
    max_sessions: '30000',
    max_sessions_per_user: '4',
    log_level: 'warning',
    ...(opts.extra || {}),
  };
  const configFile = path.join(opts.dir, 'imgw.conf');
  await fs.writeFile(configFile,
    '# Written by bench/run.mjs\n' +
    Object.entries(conf).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
  const logFile = path.join(opts.dir, 'imgw.log');
  const log = await fs.open(logFile, 'w');
  const child = spawn(opts.binary, ['--config', configFile], {
    stdio: ['ignore', log.fd, log.fd],
  });
  await log.close();
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
    child.on('error', (err) => {
      exited = { code: null, signal: null, error: err.message };
      resolve(exited);
    });
  });
  const tail = async () => {
    try {
      const s = await fs.readFile(logFile, 'utf8');
      return s.slice(-4000);
    } catch { return ''; }
  };
  try {
    await waitForPort(listenPort, {
      deadline: Date.now() + 15000,
      abort: () => (exited ? `imgw exited ${JSON.stringify(exited)}` : null),
    });
  } catch (err) {
    err.message += `\n--- ${logFile} ---\n${await tail()}`;
    if (!exited) child.kill('SIGKILL');
    throw err;
  }
  return {
    pid: child.pid,
    listenPort,
    url: `ws://127.0.0.1:${listenPort}/ws`,
    configFile,
    logFile,
    config: conf,
    get exited() { return exited; },
    tail,
    async stop() {
      if (exited) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 10000);
      const r = await exitPromise;
      clearTimeout(timer);
      return r;
    },
  };
}
