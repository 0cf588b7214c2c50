// Prosody for a benchmark phase: tests/lib/prosody.mjs with benchmark settings, and
// bulk account creation.
//
// Settings on top of the test defaults: Nagle off (the test library does that too;
// Prosody's default adds 30-45 ms per stanza at low and medium rates), a listen backlog
// large enough for thousands of clients connecting at once, logging at "warn" (debug
// logging would dominate Prosody's CPU), plain-password storage, and Lua's generational
// garbage collector. With the default incremental collector, Prosody 0.12.3 on Lua 5.4
// stalls its event loop in proportion to its heap: measured here, worst latency per
// second of about 100 ms with 3,000 WebSocket sessions and 300 ms with 10,000, against
// 5-25 ms with `gc = { mode = "generational" }` (which also halves login time). The
// baseline should be Prosody at its best, so generational it is; pass
// --prosody-config 'gc = { mode = "incremental" }' to see the default.
//
// Accounts are written straight into Prosody's file store, in the same
// `return { ["password"] = "..." };` files that `prosodyctl register` writes for
// internal_plain, because registering 20,000 users one prosodyctl process at a time
// takes many minutes. Logins then check a plain password, which is cheaper for Prosody
// than a SCRAM hash; account set-up and login are outside every measured window.

import fs from 'node:fs/promises';
import path from 'node:path';
import { startProsody } from '../../tests/lib/prosody.mjs';

/**
 * Prosody's util.datamanager encodes every byte outside [A-Za-z0-9] of a path element
 * as %xx (lower-case hex).
 * @param {string} s
 */
export function encodePathElement(s) {
  return [...Buffer.from(s, 'utf8')].map((b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9]/.test(c) ? c : '%' + b.toString(16).padStart(2, '0');
  }).join('');
}

/**
 * @param {object} opts
 * @param {string} opts.domain
 * @param {{domain:string, secret:string}|null} [opts.component]
 * @param {boolean} [opts.websocket]
 * @param {{gateway:string}|null} [opts.companion]  load mod_imgw_companion for that gateway
 * @param {string[]} [opts.modules]  more global modules (e.g. 'offline')
 * @param {string} [opts.extraConfig]  raw Lua for the global section (after ours)
 * @returns {Promise<object>} the tests/lib/prosody.mjs instance, plus addAccounts(users)
 */
export async function startBenchProsody(opts) {
  const p = await startProsody({
    domain: opts.domain,
    components: opts.component ? [opts.component] : [],
    websocket: !!opts.websocket,
    companion: opts.companion || null,
    modules: opts.modules || [],
    logLevel: 'warn',
    // Later assignments win in Prosody's config file, so these override the test defaults.
    extraConfig: [
      'authentication = "internal_plain"',
      'network_settings = { nagle = false; tcp_backlog = 4096 }',
      'gc = { mode = "generational" }',
      opts.extraConfig || '',
    ].join('\n'),
  });
  const accountsDir = path.join(p.dir, 'data', encodePathElement(opts.domain), 'accounts');
  await fs.mkdir(accountsDir, { recursive: true });
  /**
   * Writes accounts into the file store. Safe while Prosody runs: it reads an account
   * file when the user logs in.
   * @param {Array<[string,string]>} users
   */
  p.addAccounts = async (users) => {
    const batch = 256;
    for (let i = 0; i < users.length; i += batch) {
      await Promise.all(users.slice(i, i + batch).map(([u, pw]) =>
        fs.writeFile(path.join(accountsDir, `${encodePathElement(u)}.dat`),
          `return {\n\t["password"] = ${JSON.stringify(pw)};\n};\n`)));
    }
  };
  return p;
}
