// The soak (issue 10): chat both ways while processes are killed, and count every message.
//
//   node bench/soak.mjs [--minutes 10] [--web 12] [--app 4] [--rate 1] [--kill-every 20]
//                       [--kinds gateway,prosody,postgres,redis] [--seed N] [--check]
//
// Starts on private loopback ports: PostgreSQL, Redis, Prosody with mod_imgw_companion
// (companion protocol version 1) serving two gateway domains, and two gateways (node 0
// on gw.shop.test, node 1 on gw2.shop.test) in same-JID mode sharing PostgreSQL and Redis.
// W web users (ImgwClient from clients/web/imgw.js, the real browser client, over
// WebSocket, SockJS (sockjs-client) and the JSONP long-poll API in turn, spread over both
// gateways) and M XMPP app users (@xmpp/client) each send `--rate` messages per second
// to random users of the other kind. Meanwhile, every `--kill-every` s (±50 %), one process
// of the kinds listed is killed with SIGKILL and restarted 1-5 s later (one at a time).
//
// Every message carries a token in its body and is followed from send to the end:
//   web sends: sent, acked (durable at the gateway), at the app recipient (XMPP), in history;
//   app sends: sent, accepted by the XMPP server (a ping sent after it was answered: the
//     server handles one stream in order), at the web recipient (live or recovered after a
//     reconnect), in history.
// An app client resends, after a reconnect, what the server had not accepted (as XEP-0198
// clients do), with the same id. After the run it stops killing, lets everything settle,
// and prints a table: lost = acked/accepted but missing at the recipient or in history;
// duplicated = shown twice to one recipient (same id after the client's de-duplication, or
// the same message under two ids). `--check` exits 1 unless both are 0.
//
// An external XMPP server (a real Openfire with the companion plugin, say) instead of the
// private Prosody:
//
//   node bench/soak.mjs --xmpp 127.0.0.1:5222:5275 --domain shop.example \
//       --component-domain gw.shop.example --component-secret SECRET \
//       --user-api http://127.0.0.1:9090/plugins/userregister/users --user-api-secret S \
//       [--xmpp-pid-file FILE --xmpp-restart-cmd "CMD"] [--gateways 2]
//
// Both gateways then bind the one component domain with `allow_multiple = yes` (the server
// must allow several connections for it: Openfire does, Prosody cannot). PostgreSQL and
// Redis are still private. App users (and web users with `--web-accounts api`) are created
// or given the password `--password` through the companion's HTTP user API
// (openfire-plugin/README.md); without `--user-api` they must exist with that password.
// Web users are otherwise registered by the gateway at their first login. User names are
// `--user-prefix` (default `soak` here, none with Prosody) + web0.., app0...
// With `--xmpp-pid-file` (a file holding the server's process id) and `--xmpp-restart-cmd`
// (a shell command that starts it again and returns), the kind `xmpp` kills the server with
// SIGKILL and restarts it; the script waits until its c2s and component ports accept
// connections. The server is left running at the end. The pid file also lets `--scenario
// load` measure the server's CPU.
//
// Scenarios (`--scenario`, default `soak`):
//   soak   the above.
//   check  a short functional check, against either server: a web-online user gets no
//          offline messages (and an offline one does), contacts see `user@DOMAIN/web`,
//          a message to the full JID reaches the browser, registration at the first login
//          works on every gateway. Exits 1 when a check fails.
//   burst  issue 10's measurement: one app user sends `--count` (2000) messages at `--rate`
//          (500) msg/s to one web user whose browser is on the last gateway; the first
//          gateway is SIGKILLed after half of them (and not restarted). Reports how many
//          never reached the browser nor the history, reached the browser but not the
//          history, or the history but not the browser, and duplicates.
//   load   issue 14's measurement: `--web` (200) web users online over WebSocket, `--app`
//          (10) app users sending `--rate` (1000) msg/s in aggregate for `--seconds` (20)
//          to random web users. Reports delivery, latency, the CPU time per message of the
//          XMPP server (pid from `--xmpp-pid-file`, or the private Prosody), of each gateway
//          and of this process, and the messages the server stored offline for the web
//          users (it must be 0: they are online).
// Offline messages are counted with XEP-0013 (a login with the user's password, without
// presence) on an external server, from Prosody's storage on the private one; users whose
// password the script does not know are not counted.
//
// `--dump FILE` (soak scenario) writes, for a post-mortem, every message followed (send,
// ack and first arrival times, the ids it arrived under, whether its first arrival carried
// an XEP-0203 delay, i.e. came from offline storage), the kill times and each app client's online/disconnect
// times, as JSON (times in ms since the epoch). On an external server the tokens carry the
// run's id, so a message an earlier run left in offline storage is not taken for this run's.
//
// Progress goes to stderr, the report (Markdown) to stdout.
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import WebSocket from 'ws';
import SockJS from 'sockjs-client';
import { client as xmppClient } from '@xmpp/client';
import xml from '@xmpp/xml';
import { ImgwClient } from '../clients/web/imgw.js';
import { startProsody } from '../tests/lib/prosody.mjs';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { startRedis } from '../tests/lib/redis.mjs';
import { startImgw } from '../tests/lib/imgw.mjs';
import { waitForPort } from '../tests/lib/ports.mjs';
import { login, nextMessage, nextPresence, stopAll } from '../tests/lib/xmpp.mjs';
import { sleep, until, within } from '../tests/lib/bounded.mjs';
import { cpuSeconds } from './lib/procstat.mjs';

const { values: opt } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'soak' },
    minutes: { type: 'string', default: '10' },
    web: { type: 'string' },
    app: { type: 'string' },
    rate: { type: 'string' },
    count: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '20' },
    'kill-every': { type: 'string', default: '20' },
    kinds: { type: 'string' },
    seed: { type: 'string', default: String(Date.now() % 1000000) },
    settle: { type: 'string', default: '120' },
    check: { type: 'boolean', default: false },
    gateways: { type: 'string', default: '2' },
    xmpp: { type: 'string' },
    domain: { type: 'string' },
    'component-domain': { type: 'string' },
    'component-secret': { type: 'string' },
    'user-api': { type: 'string' },
    'user-api-secret': { type: 'string', default: process.env.IMGW_USER_API_SECRET ?? '' },
    'web-accounts': { type: 'string', default: 'gateway' },
    'user-prefix': { type: 'string' },
    password: { type: 'string', default: 'pw' },
    'xmpp-pid-file': { type: 'string' },
    'xmpp-restart-cmd': { type: 'string' },
    dump: { type: 'string' },
  },
});
const SCENARIO = opt.scenario;
if (!['soak', 'check', 'burst', 'load'].includes(SCENARIO)) throw new Error(`--scenario: soak, check, burst or load, not ${SCENARIO}`);
const EXTERNAL = opt.xmpp !== undefined;
const MINUTES = Number(opt.minutes);
const W = Number(opt.web ?? { soak: 12, check: 0, burst: 1, load: 200 }[SCENARIO]);
const M = Number(opt.app ?? { soak: 4, check: 0, burst: 1, load: 10 }[SCENARIO]);
const RATE = Number(opt.rate ?? { soak: 1, check: 1, burst: 500, load: 1000 }[SCENARIO]);
const KILL_EVERY = Number(opt['kill-every']);
const SEED = Number(opt.seed);
const NGW = Number(opt.gateways);
if (!(NGW >= 1 && NGW <= 8)) throw new Error('--gateways: 1 to 8');
if (SCENARIO === 'burst' && NGW < 2) throw new Error('--scenario burst needs two gateways');
const DOMAIN = opt.domain ?? (EXTERNAL ? 'shop.example' : 'shop.test');
// The private Prosody cannot bind one component domain twice: a domain per gateway. An
// external server gets one domain for all of them, with allow_multiple.
const GWS = EXTERNAL
  ? Array.from({ length: NGW }, () => opt['component-domain'] ?? `gw.${DOMAIN}`)
  : Array.from({ length: NGW }, (_, i) => (i === 0 ? `gw.${DOMAIN}` : `gw${i + 1}.${DOMAIN}`));
const SECRET = opt['component-secret'] ?? 's3cret';
const PASSWORD = opt.password;
const PREFIX = opt['user-prefix'] ?? (EXTERNAL ? 'soak' : '');
const KINDS = (opt.kinds ?? (EXTERNAL
  ? ['gateway', 'postgres', 'redis', ...(opt['xmpp-restart-cmd'] ? ['xmpp'] : [])].join(',')
  : 'gateway,prosody,postgres,redis')).split(',').filter(Boolean);
for (const k of KINDS) {
  const ok = ['gateway', 'postgres', 'redis', EXTERNAL ? 'xmpp' : 'prosody'].includes(k);
  if (!ok) throw new Error(`--kinds: ${k} is not one of gateway, postgres, redis, ${EXTERNAL ? 'xmpp' : 'prosody'}`);
}
if (KINDS.includes('xmpp') && !(opt['xmpp-pid-file'] && opt['xmpp-restart-cmd'])) {
  throw new Error('the kind xmpp needs --xmpp-pid-file and --xmpp-restart-cmd');
}
if (!['gateway', 'api'].includes(opt['web-accounts'])) throw new Error('--web-accounts: gateway or api');
if (opt['web-accounts'] === 'api' && !opt['user-api']) throw new Error('--web-accounts api needs --user-api');
const log = (...a) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

// A small seeded PRNG (mulberry32), so a run can be repeated.
let rs = SEED >>> 0;
function random() {
  rs = (rs + 0x6d2b79f5) >>> 0;
  let t = rs;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(random() * a.length)];

const webUsers = Array.from({ length: W }, (_, i) => `${PREFIX}web${i}`);
const appUsers = Array.from({ length: M }, (_, i) => `${PREFIX}app${i}`);
const TRANSPORTS = ['websocket', 'sockjs', 'jsonp'];

// ---- bookkeeping ---------------------------------------------------------------

/** token -> record */
const msgs = new Map();
const stats = {
  kills: Object.fromEntries(KINDS.map((k) => [k, 0])),
  restartMs: Object.fromEntries(KINDS.map((k) => [k, []])),
  webReconnects: 0, appReconnects: 0, errors: [],
};

function record(token, r) {
  msgs.set(token, { token, ...r, deliveries: new Map(), historyRows: 0 });
}

// ---- the XMPP server -------------------------------------------------------------

/** Users whose password this script knows (for c2s logins that count offline messages). */
const knownPasswords = new Set();

/** The private Prosody, with every user made beforehand (the companion adopts them). */
async function privateProsody() {
  const users = [...webUsers, ...appUsers, ...(SCENARIO === 'check' ? CHECK_USERS : [])];
  const p = await startProsody({
    domain: DOMAIN,
    components: GWS.map((d) => ({ domain: d, secret: SECRET })),
    users: users.map((u) => [u, PASSWORD]),
    companion: { gateway: GWS, adopt: true },
    modules: ['offline'],
    logLevel: 'warn',
  });
  for (const u of users) knownPasswords.add(u);
  // Prosody's storage names a host and a user with every non-alphanumeric byte as %xx.
  const esc = (s) => s.replace(/\W/g, (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return {
    kind: 'prosody', domain: DOMAIN, host: '127.0.0.1', c2sPort: p.c2sPort, componentPort: p.componentPort,
    pid: () => p.pid(),
    prosody: p,
    async kill() { process.kill(p.pid(), 'SIGKILL'); await within((async () => { while (p.pid()) await sleep(20); })(), 10000, 'prosody gone'); },
    async start() { await p.start(); },
    async offlineCount(user) {
      const f = path.join(p.dir, 'data', esc(DOMAIN), 'offline', `${esc(user)}.list`);
      if (!fs.existsSync(f)) return 0;
      return (fs.readFileSync(f, 'utf8').match(/^item\(/gm) || []).length;
    },
    async accountExists(user) {
      return fs.existsSync(path.join(p.dir, 'data', esc(DOMAIN), 'accounts', `${esc(user)}.dat`));
    },
    cleanup: () => p.cleanup(),
  };
}

/** POST to the companion's HTTP user API; resolves { status, body }. */
async function userApi(body) {
  const res = await fetch(opt['user-api'], {
    method: 'POST',
    headers: { 'X-Imgw-Secret': opt['user-api-secret'], 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15000),
  });
  return { status: res.status, body: await res.json().catch(() => ({})) };
}

/** The account exists with PASSWORD afterwards (created, or updated when the companion manages it). */
async function ensureAccount(user) {
  const made = await userApi({ action: 'create', username: user, password: PASSWORD });
  if (made.status === 201) return 'created';
  if (made.status === 200) {
    const upd = await userApi({ action: 'update', username: user, password: PASSWORD });
    if (upd.status !== 200) throw new Error(`user API: update of ${user}: ${upd.status} ${JSON.stringify(upd.body)}`);
    return made.body.status;
  }
  throw new Error(`user API: create of ${user}: ${made.status} ${JSON.stringify(made.body)}`
    + (made.status === 409 ? ' (an account the companion did not make: turn on plugin.imgw.adopt.existing, or use --user-prefix)' : ''));
}

/** An XMPP server run by someone else (--xmpp HOST:C2S:COMPONENT). */
function externalServer() {
  const [host, c2s, comp] = opt.xmpp.split(':');
  if (!host || !(Number(c2s) > 0) || !(Number(comp) > 0)) throw new Error('--xmpp HOST:C2S_PORT:COMPONENT_PORT');
  const pidFile = opt['xmpp-pid-file'];
  const readPid = () => {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (!(pid > 1)) throw new Error(`${pidFile}: no process id`);
    return pid;
  };
  const alive = (pid) => { try { process.kill(pid, 0); return true; } catch { return false; } };
  const s = {
    kind: 'external', domain: DOMAIN, host, c2sPort: Number(c2s), componentPort: Number(comp),
    pid: () => (pidFile ? readPid() : undefined),
    async kill() {
      const pid = readPid();
      process.kill(pid, 'SIGKILL');
      await until(`XMPP server (pid ${pid}) gone`, 10000, () => !alive(pid));
    },
    async start() {
      await within(new Promise((resolve, reject) => {
        execFile('sh', ['-c', opt['xmpp-restart-cmd']], { timeout: 120000 }, (err, stdout, stderr) => {
          if (err) reject(new Error(`--xmpp-restart-cmd failed: ${err.message} ${stderr}`)); else resolve(stdout);
        });
      }), 125000, 'xmpp restart command');
      // Java servers open their ports a while after the process starts; loopback only.
      const deadline = Date.now() + 180000;
      await waitForPort(s.c2sPort, { deadline, intervalMs: 200 });
      await waitForPort(s.componentPort, { deadline, intervalMs: 200 });
    },
    /** XEP-0013: the number of messages stored offline for user (who must not be online over c2s). */
    async offlineCount(user, purge = false) {
      if (!knownPasswords.has(user)) return NaN;
      const c = await login({ host, port: s.c2sPort, domain: DOMAIN, username: user, password: PASSWORD, resource: 'soak-count', presence: false });
      try {
        const info = await c.iqCaller.request(xml('iq', { type: 'get', to: `${user}@${DOMAIN}` },
          xml('query', { xmlns: 'http://jabber.org/protocol/disco#info', node: 'http://jabber.org/protocol/offline' })), 10000);
        const field = info.getChild('query')?.getChild('x', 'jabber:x:data')?.getChildren('field').find((f) => f.attrs.var === 'number_of_messages');
        const n = Number(field?.getChildText('value'));
        if (purge && n > 0) {
          await c.iqCaller.request(xml('iq', { type: 'set' }, xml('offline', { xmlns: 'http://jabber.org/protocol/offline' }, xml('purge'))), 10000);
        }
        return n;
      } finally {
        await stopAll(c);
      }
    },
    /** true: exists and the companion manages it; false: no such account; undefined: cannot tell. */
    async accountExists(user) {
      if (!opt['user-api']) return undefined;
      // An update that names no field changes nothing: 404 for no account, 200 for a managed one.
      const r = await userApi({ action: 'update', username: user });
      return r.status === 200 ? true : (r.status === 404 ? false : undefined);
    },
    cleanup: async () => {},
  };
  return s;
}

/** Makes the app users (and, with --web-accounts api, the web users) with PASSWORD. */
async function prepareExternalAccounts(users) {
  if (!opt['user-api']) {
    for (const u of users) knownPasswords.add(u);
    return;
  }
  const made = {};
  for (let i = 0; i < users.length; i += 8) {
    const batch = users.slice(i, i + 8);
    for (const st of await Promise.all(batch.map(ensureAccount))) made[st] = (made[st] ?? 0) + 1;
    for (const u of batch) knownPasswords.add(u);
  }
  log(`accounts through the user API: ${JSON.stringify(made)}`);
}

// ---- servers -------------------------------------------------------------------

// The check scenario's users (a fresh pair per run for registration at the first login).
const RUN = crypto.randomBytes(3).toString('hex');
// A server that outlives the run may hand over messages of an earlier one (offline storage):
// tokens name the run there.
const TOK = EXTERNAL ? `${RUN}.` : '';
const CHECK_USERS = [`${PREFIX}ckapp`, `${PREFIX}ckweb`];
const REG_USERS = Array.from({ length: NGW }, (_, i) => `${PREFIX}reg${RUN}g${i}`);

const pg = await startPostgres({ db: 'imgw' });
const redis = await startRedis();
const xs = EXTERNAL ? externalServer() : await privateProsody();
if (EXTERNAL) {
  const accounts = [...appUsers, ...(opt['web-accounts'] === 'api' ? webUsers : []), ...(SCENARIO === 'check' ? CHECK_USERS : [])];
  await prepareExternalAccounts(accounts);
}
const spools = GWS.map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-soak-spool-')));
const gws = [];
for (let i = 0; i < GWS.length; i++) {
  gws.push(await startImgw({
    prosody: { componentPort: xs.componentPort, domain: DOMAIN },
    componentDomain: GWS[i],
    secret: SECRET,
    config: {
      mode: 'samejid', node_id: i, pg_conninfo: `"${pg.connString}"`, spool_dir: spools[i],
      redis_host: '127.0.0.1', redis_port: redis.port, companion_lease_s: 15,
      // info: the companion version found after each handshake is in the log (few lines).
      log_level: EXTERNAL ? 'info' : 'warn',
      max_sessions_per_user: 64, xmpp_host: xs.host,
      ...(EXTERNAL ? { allow_multiple: 'yes' } : {}),
    },
  }));
}
// Version 1 of the companion is what this measures: a gateway that found only version 0
// (or none) would make every figure meaningless. (Private Prosody: tests cover it.)
if (EXTERNAL) {
  for (const g of gws) {
    await until(`gateway :${g.port} finds companion version 1`, 20000,
      () => /companion found on \S+ \(version 1/.test(g.logText()), g.logText);
  }
}
log(`seed ${SEED}: PostgreSQL :${pg.port}, Redis :${redis.port}, ${EXTERNAL ? `external XMPP server ${xs.host}:${xs.c2sPort}/${xs.componentPort}` : `Prosody :${xs.c2sPort}`}, gateways :${gws.map((g) => g.port).join(' :')}`);

// ---- web clients ---------------------------------------------------------------

function sockjsTransport(base) {
  return (url, h) => {
    let done = false;
    const sock = new SockJS(`${base}/sockjs/chat`, null, { transports: ['xhr-streaming', 'xhr-polling'], timeout: 5000 });
    sock.onopen = () => h.onOpen();
    sock.onmessage = (e) => h.onMessage(String(e.data));
    sock.onclose = (e) => { if (!done) { done = true; h.onClose(e.code, e.reason); } };
    return {
      send(t) { if (sock.readyState === 1) sock.send(t); },
      close(code, reason) { try { sock.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000, reason ?? ''); } catch { /* closed */ } },
    };
  };
}

/**
 * A web client of `user` on gateway index `gi` over `transport`, recording every message
 * with a soak token (its deliveries and the latency from the `sent` time in the body).
 */
function webClient(user, gi, transport) {
  const gw = gws[gi];
  const o = {
    url: gw.wsUrl, user, WebSocket, backoff: { minMs: 100, maxMs: 2000 }, pingIntervalMs: 5000,
    pongTimeoutMs: 5000, fetch: globalThis.fetch, jsonp: 'fetch', pollTimeoutS: 10,
  };
  if (transport === 'jsonp') o.transports = ['jsonp'];
  else if (transport === 'sockjs') o.transport = sockjsTransport(gw.httpUrl);
  else o.transports = ['websocket'];
  const c = new ImgwClient(o);
  c.soak = { user, transport, gw: gi, seen: new Map() };
  c.on('message', (m) => {
    const match = /soak (\S+)(?: (\d+))?/.exec(m.body);
    const token = match?.[1];
    if (!token || m.own) return;
    const r = msgs.get(token);
    const seen = c.soak.seen.get(token) ?? new Set();
    seen.add(m.id);
    c.soak.seen.set(token, seen);
    if (r) {
      const d = r.deliveries.get(user) ?? { ids: new Map(), recovered: 0, live: 0 };
      d.ids.set(m.id, (d.ids.get(m.id) ?? 0) + 1);
      if (m.recovered) d.recovered++; else d.live++;
      if (d.at === undefined) d.at = Date.now();
      r.deliveries.set(user, d);
    }
  });
  c.on('open', (w) => { if (w.reconnected) stats.webReconnects++; });
  c.on('error', () => {});
  return c;
}

// ---- app clients ---------------------------------------------------------------

function appClient(user) {
  const c = xmppClient({ service: `xmpp://${xs.host}:${xs.c2sPort}`, domain: DOMAIN, resource: 'phone', username: user, password: PASSWORD });
  const a = { user, c, unconfirmed: [], seq: 0, online: false, seen: new Map(), events: [] };
  c.on('error', () => {});
  c.on('online', async () => {
    if (a.everOnline) stats.appReconnects++;
    a.events.push(['online', Date.now()]);
    a.everOnline = true;
    a.online = true;
    try {
      await c.send(xml('presence'));
      // What the server had not accepted before the connection broke goes again, same id.
      for (const u of a.unconfirmed) await c.send(u.stanza);
    } catch { /* the next online event tries again */ }
  });
  c.on('offline', () => { a.online = false; });
  c.on('disconnect', () => { a.online = false; a.events.push(['disconnect', Date.now()]); });
  c.on('stanza', (st) => {
    if (!st.is('message') || st.attrs.type === 'error') return;
    const body = st.getChildText('body') || '';
    const token = /soak (\S+)/.exec(body)?.[1];
    if (!token) return;
    const r = msgs.get(token);
    const ids = a.seen.get(token) ?? new Map();
    ids.set(st.attrs.id, (ids.get(st.attrs.id) ?? 0) + 1);
    a.seen.set(token, ids);
    // `at` and `delayed` describe the first arrival (a later one is a resend, same id).
    const first = r?.deliveries.get(user);
    if (r) r.deliveries.set(user, { ids, recovered: 0, live: 1, at: first?.at ?? Date.now(), delayed: first?.delayed ?? !!st.getChild('delay') });
  });
  return a;
}

/** Confirms an app's sends: a ping answered means everything written before it was accepted. */
async function confirmApp(a) {
  if (!a.online || !a.unconfirmed.length) return;
  const upto = a.unconfirmed.length;
  try {
    await a.c.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    for (const u of a.unconfirmed.splice(0, upto)) msgs.get(u.token).accepted = true;
  } catch { /* not confirmed: stays for the resend after reconnect */ }
}

/** An app message to a web user, recorded under a fresh token, sent (or kept for after a reconnect). */
let n = 0;
function appSend(a, to, extra = '') {
  const token = `${TOK}a${++n}`;
  const stanza = xml('message', { to: `${to}@${DOMAIN}`, type: 'chat', id: `${a.user}-${RUN}-${++a.seq}` }, xml('body', {}, `soak ${token}${extra}`));
  record(token, { dir: 'app→web', from: a.user, to, id: stanza.attrs.id, sentAt: Date.now() });
  a.unconfirmed.push({ token, stanza });
  if (a.online) a.c.send(stanza).catch(() => {});
  return token;
}

async function historyRows() {
  const out = await pg.psql("SELECT substring(body from 'soak (\\S+)'), count(*) FROM messages WHERE body LIKE 'soak %' GROUP BY 1", { fieldSep: '|' });
  const rows = new Map();
  for (const line of out.split('\n').filter(Boolean)) {
    const [token, count] = line.split('|');
    rows.set(token, Number(count));
  }
  return rows;
}

/** Offline messages per user (NaN where the password is unknown), summed. */
async function offlineTotal(users, purge = false) {
  let total = 0;
  let counted = 0;
  const per = {};
  for (const u of users) {
    const c = await xs.offlineCount(u, purge).catch((e) => { stats.errors.push(`offline count ${u}: ${e.message}`); return NaN; });
    if (Number.isNaN(c)) continue;
    counted++;
    total += c;
    if (c) per[u] = c;
  }
  return { total, counted, per };
}

const machine = `${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`;
const serverName = EXTERNAL ? `external XMPP server ${opt.xmpp} (${DOMAIN}, component ${GWS[0]}, allow_multiple)` : 'private Prosody';
const commandLine = `node bench/soak.mjs ${process.argv.slice(2).map((a) => (/[\s"]/.test(a) ? JSON.stringify(a) : a)).join(' ')}`
  .replace(/(--user-api-secret )\S+/, '$1…').replace(/(--component-secret )\S+/, '$1…');

/**
 * What each gateway's log says about its links (external server, log_level info): how
 * often it found companion version 1, fell back, or was refused. A fallback would void
 * the guarantees being measured, so the reports show it.
 */
function linkSummary() {
  if (!EXTERNAL) return '';
  const count = (text, re) => (text.match(re) || []).length;
  return gws.map((g, i) => {
    const t = g.logText();
    const parts = [`v1 found ${count(t, /companion found on \S+ \(version 1/g)}`];
    const v0 = count(t, /companion found on \S+ \(version 0\)/g) + count(t, /did not answer disco#info/g) + count(t, /does not announce the imgw companion/g);
    if (v0) parts.push(`fell back to version 0 ${v0}`);
    const refused = count(t, /refused a version-1 request/g);
    if (refused) parts.push(`version-1 requests refused ${refused}`);
    const errors = count(t, / error +/g);
    if (errors) parts.push(`error lines ${errors}`);
    return `gateway ${i}: ${parts.join(', ')}`;
  }).join('; ');
}

async function teardown() {
  for (const g of gws) await g.cleanup().catch((e) => log(`gateway cleanup: ${e.message.split('\n')[0]}`));
  await xs.cleanup();
  await redis.cleanup();
  await pg.cleanup();
  for (const d of spools) fs.rmSync(d, { recursive: true, force: true });
}

// ---- scenario: check -----------------------------------------------------------

/**
 * A c2s login with initial presence, done once the server has handled it: a ping answered
 * after it (the server handles one stream in order). Openfire does not reflect initial
 * presence to the session itself, as Prosody does, so tests/lib/xmpp.mjs's wait for the
 * echo cannot be used.
 */
async function c2sLogin(username, resource) {
  const c = await login({ host: xs.host, port: xs.c2sPort, domain: DOMAIN, username, password: PASSWORD, resource, presence: false });
  await c.send(xml('presence'));
  await c.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 10000);
  return c;
}

async function scenarioCheck() {
  const results = [];
  const ok = (name, pass, detail = '') => {
    results.push({ name, pass, detail });
    log(`${pass ? 'ok  ' : 'FAIL'} ${name}${detail ? `: ${detail}` : ''}`);
  };
  const attempt = async (name, fn) => {
    try {
      const detail = await fn();
      ok(name, true, detail ?? '');
    } catch (err) {
      ok(name, false, err.message.split('\n')[0]);
    }
  };
  const [appUser, webUser] = CHECK_USERS;
  const fromWeb = (x) => x.attrs.from === `${webUser}@${DOMAIN}/web`;
  const opened = [];
  const openWeb = async (user, gi) => {
    const c = webClient(user, gi, 'websocket');
    opened.push(c);
    await within(c.connect(), 20000, `${user} signs in on gateway ${gi}`);
    return c;
  };
  const nextMsg = (c, pred, ms) => within(new Promise((resolve) => {
    const off = c.on('message', (m) => { if (pred(m)) { off(); resolve(m); } });
  }), ms, 'message at the browser');

  // 1. Registration at the first login, on each gateway: a user name nobody used before.
  for (let i = 0; i < gws.length; i++) {
    await attempt(`registration at the first login on gateway ${i} (${REG_USERS[i]})`, async () => {
      const before = await xs.accountExists(REG_USERS[i]);
      if (before === true) throw new Error('the account existed before');
      const c = await openWeb(REG_USERS[i], i);
      const after = await xs.accountExists(REG_USERS[i]);
      c.close();
      if (after === false) throw new Error('signed in, but no account on the server');
      return after === undefined ? 'signed in (account not checked: no --user-api)' : 'signed in; the account exists and the companion manages it';
    });
  }

  // 2. The contact sees the web resource; the web user subscribed to the app user
  //    (a short c2s login approves, as webonline.test.mjs does).
  const app = await c2sLogin(appUser, 'phone');
  let web;
  try {
    await attempt(`${appUser} and ${webUser} are contacts`, async () => {
      const me = await c2sLogin(webUser, 'setup');
      try {
        await app.send(xml('presence', { to: `${webUser}@${DOMAIN}`, type: 'subscribe' }));
        // Already subscribed (an earlier run): the server answers for the contact and
        // forwards nothing; otherwise approve.
        const asked = await nextPresence(me, (x) => x.attrs.type === 'subscribe', 5000).catch(() => null);
        if (asked) await me.send(xml('presence', { to: `${appUser}@${DOMAIN}`, type: 'subscribed' }));
        // A presence broadcast reaches the contact only if the subscription holds.
        const seen = nextPresence(app, (x) => x.attrs.from === `${webUser}@${DOMAIN}/setup` && !x.attrs.type && x.getChildText('status') === RUN, 10000);
        await me.send(xml('presence', {}, xml('status', {}, RUN)));
        await seen;
        return asked ? 'subscribed now' : 'already subscribed';
      } finally {
        await stopAll(me);
      }
      await nextPresence(app, (x) => x.attrs.from === `${webUser}@${DOMAIN}/setup` && x.attrs.type === 'unavailable', 10000);
    });
    // Nothing left from an earlier run.
    await xs.offlineCount(webUser, true).catch(() => {});
    const gi = gws.length - 1;
    await attempt(`the contact sees ${webUser}@${DOMAIN}/web come online (browser on gateway ${gi})`, async () => {
      const seen = nextPresence(app, (x) => fromWeb(x) && !x.attrs.type, 15000);
      web = await openWeb(webUser, gi);
      await seen;
    });
    await attempt('a contact logging in later gets the web resource (probe answered)', async () => {
      const late = await c2sLogin(appUser, 'tablet');
      try {
        await nextPresence(late, (x) => fromWeb(x) && !x.attrs.type, 10000);
      } finally {
        await stopAll(late);
      }
    });
    // 3. Messages for the web-online user reach the browser (on any gateway the copy lands)
    //    and nothing is stored offline.
    await attempt('messages to the bare JID reach the browser; nothing stored offline', async () => {
      // One at a time: with several gateways each copy may land on any of them.
      const ms = [];
      for (let i = 1; i <= 6; i++) {
        const got = nextMsg(web, (m) => m.body === `check bare ${RUN} ${i}`, 15000);
        const t0 = Date.now();
        await app.send(xml('message', { to: `${webUser}@${DOMAIN}`, type: 'chat', id: `ck-${RUN}-${i}` }, xml('body', {}, `check bare ${RUN} ${i}`)));
        await got;
        ms.push(Date.now() - t0);
      }
      const off = await xs.offlineCount(webUser);
      if (off !== 0) throw new Error(`${off} stored offline`);
      return `6 of 6 (ms each: ${ms.join(', ')}), 0 offline`;
    });
    await attempt('a message to the full JID user@DOMAIN/web reaches the browser', async () => {
      const got = nextMsg(web, (m) => m.body === `check full ${RUN}`, 15000);
      await app.send(xml('message', { to: `${webUser}@${DOMAIN}/web`, type: 'chat', id: `ckf-${RUN}` }, xml('body', {}, `check full ${RUN}`)));
      await got;
      const off = await xs.offlineCount(webUser);
      if (off !== 0) throw new Error(`${off} stored offline`);
    });
    await attempt('the last tab closed: the contact sees the web resource go, and a message is stored offline', async () => {
      const gone = nextPresence(app, (x) => fromWeb(x) && x.attrs.type === 'unavailable', 15000);
      web.close();
      await gone;
      await app.send(xml('message', { to: `${webUser}@${DOMAIN}`, type: 'chat', id: `cko-${RUN}` }, xml('body', {}, `check offline ${RUN}`)));
      const n1 = await until('stored offline', 10000, async () => ((await xs.offlineCount(webUser)) === 1 ? 1 : 0));
      await xs.offlineCount(webUser, true);
      return `${n1} stored offline (purged)`;
    });
  } finally {
    await stopAll(app);
  }
  for (const c of opened) c.close();

  const lines = [];
  lines.push(`# imgw check against the ${serverName}, ${new Date().toISOString().slice(0, 10)}`);
  lines.push('');
  lines.push(`Command: \`${commandLine}\`  `);
  lines.push(`Gateways: ${gws.length} (nodes ${gws.map((_, i) => i).join(', ')}) on ${[...new Set(GWS)].join(', ')}, same-JID mode`);
  lines.push('');
  lines.push('| check | result |');
  lines.push('|---|---|');
  for (const r of results) lines.push(`| ${r.name} | ${r.pass ? 'ok' : 'FAILED'}${r.detail ? `: ${r.detail}` : ''} |`);
  if (EXTERNAL) lines.push(`\nGateway links: ${linkSummary()}.`);
  if (stats.errors.length) lines.push(`\nErrors: ${stats.errors.slice(0, 10).join('; ')}`);
  process.stdout.write(lines.join('\n') + '\n');
  return results.every((r) => r.pass) ? 0 : 1;
}

// ---- scenario: burst (issue 10's measurement) ------------------------------------

async function scenarioBurst() {
  const COUNT = Number(opt.count);
  const gi = gws.length - 1;
  const webc = webClient(webUsers[0], gi, 'websocket');
  await within(webc.connect(), 30000, `${webUsers[0]} signs in on gateway ${gi}`);
  const a = appClient(appUsers[0]);
  await within(a.c.start(), 20000, `app ${a.user} logs in`);
  await sleep(1000); // the web resource is announced one round trip after the welcome
  log(`${a.user} sends ${COUNT} messages at ${RATE} msg/s to ${webUsers[0]} (browser on gateway ${gi}); gateway 0 is SIGKILLed after message ${COUNT / 2}`);
  const t0 = Date.now();
  let sent = 0;
  let killedAt = null;
  const killP = [];
  while (sent < COUNT) {
    const due = Math.min(COUNT, Math.floor(((Date.now() - t0) / 1000) * RATE) + 1);
    while (sent < due) {
      appSend(a, webUsers[0], ` ${Date.now()}`);
      sent++;
      if (sent === COUNT / 2) {
        killedAt = Date.now();
        killP.push(gws[0].kill().then(() => log(`gateway 0 (:${gws[0].port}) SIGKILLed after message ${sent}`)));
      }
    }
    await sleep(2);
  }
  const sendMs = Date.now() - t0;
  await Promise.all(killP);
  // Every message accepted by the server (a ping answered after the last one).
  await until('the server accepted every message', 30000, async () => { await confirmApp(a); return a.unconfirmed.length === 0; });
  // Wait for the browser and the history (the companion resends what gateway 0 did not
  // acknowledge after its ack timeout, to the gateway still alive).
  const deadline = Date.now() + Number(opt.settle) * 1000;
  let rows = new Map();
  let complete = null;
  for (;;) {
    rows = await historyRows().catch(() => rows);
    const all = [...msgs.values()];
    const missing = all.filter((r) => !r.deliveries.get(r.to) || !rows.get(r.token));
    if (!missing.length) { complete = Date.now(); break; }
    if (Date.now() > deadline) break;
    await sleep(500);
  }
  const all = [...msgs.values()];
  const inBrowser = (r) => !!r.deliveries.get(r.to);
  const inHistory = (r) => !!rows.get(r.token);
  const after = (r) => r.sentAt >= killedAt;
  const count = (f) => all.filter(f).length;
  const lastArrival = Math.max(...all.map((r) => r.deliveries.get(r.to)?.at ?? 0));
  const lines = [];
  lines.push(`# imgw burst with a gateway SIGKILL (issue 10's scenario), ${serverName}, ${new Date().toISOString().slice(0, 10)}`);
  lines.push('');
  lines.push(`Command: \`${commandLine}\`  `);
  lines.push(`Machine: ${machine}  `);
  lines.push(`${COUNT} messages from ${a.user} (XMPP c2s) to ${webUsers[0]} (browser on gateway ${gi}) in ${(sendMs / 1000).toFixed(1)} s (${Math.round(COUNT / (sendMs / 1000))} msg/s); gateway 0 SIGKILLed after message ${COUNT / 2}, not restarted.`);
  lines.push('');
  lines.push('| | count |');
  lines.push('|---|---:|');
  lines.push(`| sent | ${all.length} |`);
  lines.push(`| accepted by the server | ${count((r) => r.accepted)} |`);
  lines.push(`| at the browser | ${count(inBrowser)} |`);
  lines.push(`| in history | ${count(inHistory)} |`);
  lines.push(`| **lost** (neither at the browser nor in history) | ${count((r) => !inBrowser(r) && !inHistory(r))} |`);
  lines.push(`| **missing from history** (at the browser only) | ${count((r) => inBrowser(r) && !inHistory(r))} |`);
  lines.push(`| in history, never at the browser | ${count((r) => !inBrowser(r) && inHistory(r))} |`);
  lines.push(`| duplicated (two ids at the browser, or twice in history) | ${count((r) => (r.deliveries.get(r.to)?.ids.size ?? 0) > 1 || (rows.get(r.token) ?? 0) > 1)} |`);
  lines.push(`| same id shown twice (after the client's de-duplication) | ${count((r) => [...(r.deliveries.get(r.to)?.ids.values() ?? [])].some((c) => c > 1))} |`);
  lines.push(`| reached the browser after a resend (> 5 s after it was sent) | ${count((r) => inBrowser(r) && r.deliveries.get(r.to).at - r.sentAt > 5000)} |`);
  lines.push('');
  lines.push(`All ${complete ? `complete ${((complete - killedAt) / 1000).toFixed(1)} s after the kill` : `NOT complete after ${opt.settle} s`}; last browser arrival ${((lastArrival - killedAt) / 1000).toFixed(1)} s after the kill. `
    + `Sent after the kill: ${count(after)}; of those at the browser ${count((r) => after(r) && inBrowser(r))}.`);
  if (EXTERNAL) lines.push(`\nGateway links: ${linkSummary()}.`);
  if (stats.errors.length) lines.push(`\nErrors: ${stats.errors.slice(0, 10).join('; ')}`);
  process.stdout.write(lines.join('\n') + '\n');
  webc.close();
  await within(a.c.stop().catch(() => {}), 5000, 'app stop').catch(() => {});
  const bad = count((r) => !inBrowser(r) || !inHistory(r));
  return opt.check && bad > 0 ? 1 : 0;
}

// ---- scenario: load (issue 14's measurement) -------------------------------------

async function scenarioLoad() {
  const SECONDS = Number(opt.seconds);
  const webs = webUsers.map((u, i) => webClient(u, i % gws.length, 'websocket'));
  for (let i = 0; i < webs.length; i += 20) {
    await Promise.all(webs.slice(i, i + 20).map((c) => within(c.connect(), 30000, `web client ${c.soak.user} connects`)));
  }
  log(`${W} web clients connected`);
  const apps = appUsers.map(appClient);
  await Promise.all(apps.map((a) => within(a.c.start(), 20000, `app ${a.user} logs in`)));
  log(`${M} app clients online`);
  const before = await offlineTotal(webUsers, true);
  if (before.total) log(`purged ${before.total} offline messages left from earlier runs`);
  await sleep(2000); // web resources announced, link settled

  const pids = { xmpp: xs.pid(), ...Object.fromEntries(gws.map((g, i) => [`gateway ${i}`, g.pid])) };
  const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, p ? cpuSeconds(p) : NaN]));
  const self0 = process.cpuUsage();
  const t0 = Date.now();
  let sent = 0;
  const total = Math.round(RATE * SECONDS);
  while (sent < total) {
    const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * RATE) + 1);
    while (sent < due) {
      appSend(apps[sent % apps.length], webUsers[Math.floor(random() * webUsers.length)], ` ${Date.now()}`);
      sent++;
    }
    await sleep(2);
  }
  const sendMs = Date.now() - t0;
  // Until everything arrived, or nothing new for 3 s (bounded).
  const arrived = () => [...msgs.values()].filter((r) => r.deliveries.get(r.to)).length;
  let last = -1;
  let quietSince = Date.now();
  const hardEnd = Date.now() + 120000;
  while (Date.now() < hardEnd) {
    const a = arrived();
    if (a === total) break;
    if (a !== last) { last = a; quietSince = Date.now(); } else if (Date.now() - quietSince > 3000) break;
    await sleep(100);
  }
  const windowMs = Date.now() - t0;
  const cpu1 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, p ? cpuSeconds(p) : NaN]));
  const selfUs = process.cpuUsage(self0);
  const delivered = arrived();
  for (const a of apps) await confirmApp(a);
  const lat = [...msgs.values()].map((r) => r.deliveries.get(r.to)?.at - r.sentAt).filter((x) => x >= 0).sort((x, y) => x - y);
  const pct = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] : NaN);
  await sleep(2000);
  const rows = await historyRows();
  const after = await offlineTotal(webUsers);
  const dups = [...msgs.values()].filter((r) => (r.deliveries.get(r.to)?.ids.size ?? 0) > 1).length;

  const lines = [];
  lines.push(`# imgw same-JID load, ${serverName}, ${new Date().toISOString().slice(0, 10)}`);
  lines.push('');
  lines.push(`Command: \`${commandLine}\`  `);
  lines.push(`Machine: ${machine}  `);
  lines.push(`${W} web users online over WebSocket on ${gws.length} gateway(s); ${M} app users (XMPP c2s) sent ${total} messages in ${(sendMs / 1000).toFixed(1)} s (${Math.round(total / (sendMs / 1000))} msg/s) to random web users; measured window ${(windowMs / 1000).toFixed(1)} s (first send to last arrival).`);
  lines.push('');
  lines.push('| | |');
  lines.push('|---|---:|');
  lines.push(`| delivered to the browsers | ${delivered} / ${total} |`);
  lines.push(`| duplicated | ${dups} |`);
  lines.push(`| in history | ${[...msgs.values()].filter((r) => rows.get(r.token)).length} |`);
  lines.push(`| latency p50 / p99 / max (ms, send → browser) | ${pct(50)} / ${pct(99)} / ${lat.at(-1) ?? '–'} |`);
  for (const [k, v] of Object.entries(cpu1)) {
    const d = v - cpu0[k];
    lines.push(`| CPU ${k === 'xmpp' ? `XMPP server (pid ${pids.xmpp ?? '?'})` : k}: s, µs per message | ${Number.isNaN(d) ? '–' : `${d.toFixed(2)} s, ${Math.round((d * 1e6) / Math.max(1, delivered))} µs`} |`);
  }
  const selfS = (selfUs.user + selfUs.system) / 1e6;
  lines.push(`| CPU this process (clients): s, µs per message | ${selfS.toFixed(2)} s, ${Math.round((selfS * 1e6) / Math.max(1, delivered))} µs |`);
  lines.push(`| stored offline for the web users after the run | ${after.counted ? `${after.total} (${after.counted} users counted)` : 'not counted (passwords unknown: --web-accounts api)'} |`);
  if (after.total) lines.push(`\nOffline per user: ${JSON.stringify(after.per)}`);
  if (EXTERNAL) lines.push(`\nGateway links: ${linkSummary()}.`);
  if (stats.errors.length) lines.push(`\nErrors: ${stats.errors.slice(0, 10).join('; ')}`);
  process.stdout.write(lines.join('\n') + '\n');
  for (const c of webs) c.close();
  for (const a of apps) await within(a.c.stop().catch(() => {}), 5000, 'app stop').catch(() => {});
  return opt.check && (delivered < total || after.total > 0 || dups > 0) ? 1 : 0;
}

// ---- scenario: soak --------------------------------------------------------------

const killLog = [];

async function scenarioSoak() {
  const webs = webUsers.map((user, i) => webClient(user, i % gws.length, TRANSPORTS[Math.floor(i / gws.length) % TRANSPORTS.length]));
  await Promise.all(webs.map((c) => within(c.connect(), 30000, `web client ${c.soak.user} connects`)));
  log(`${W} web clients connected (${TRANSPORTS.join(', ')})`);
  const apps = appUsers.map(appClient);
  await Promise.all(apps.map((a) => within(a.c.start(), 20000, `app ${a.user} logs in`)));
  log(`${M} app clients online`);
  const offlineBefore = await offlineTotal(webUsers, true);
  if (offlineBefore.total) log(`purged ${offlineBefore.total} offline messages left from earlier runs`);

  // ---- traffic
  let sending = true;
  async function webLoop(c) {
    while (sending) {
      await sleep(1000 / RATE * (0.5 + random()));
      if (!sending) break;
      const to = pick(appUsers);
      const token = `${TOK}w${++n}`;
      record(token, { dir: 'web→app', from: c.soak.user, to, sentAt: Date.now() });
      c.send(`${to}@${DOMAIN}`, `soak ${token}`).then((ack) => {
        const r = msgs.get(token);
        r.acked = true;
        r.id = ack.id;
      }).catch((err) => { msgs.get(token).refused = err.code || err.message; });
    }
  }
  async function appLoop(a) {
    while (sending) {
      await sleep(1000 / RATE * (0.5 + random()));
      if (!sending) break;
      appSend(a, pick(webUsers));
    }
  }
  const confirmTimer = setInterval(() => { for (const a of apps) confirmApp(a); }, 250);

  // ---- killing
  const targets = {
    gateway: () => pick(gws),
    prosody: () => xs,
    xmpp: () => xs,
    postgres: () => pg,
    redis: () => redis,
  };
  async function killOne(kind) {
    const t = targets[kind]();
    const name = kind === 'gateway' ? `gateway :${t.port}` : kind;
    const t0 = Date.now();
    if (kind === 'redis') await t.stop('SIGKILL');
    else await t.kill();
    stats.kills[kind]++;
    killLog.push([name, t0]);
    const down = 1000 + random() * 4000;
    log(`killed ${name}; restarting in ${(down / 1000).toFixed(1)} s`);
    await sleep(down);
    await t.start();
    stats.restartMs[kind].push(Date.now() - t0 - down);
    if (kind === 'gateway') await t.waitLink('up', 20000).catch((e) => stats.errors.push(e.message));
    if (kind === 'xmpp') {
      for (const g of gws) await g.waitLink('up', 60000).catch((e) => stats.errors.push(e.message));
    }
  }
  let killing = KINDS.length > 0 && KILL_EVERY > 0;
  const killer = (async () => {
    while (killing) {
      await sleep(KILL_EVERY * 1000 * (0.5 + random()));
      if (!killing) break;
      try {
        await killOne(pick(KINDS));
      } catch (err) {
        stats.errors.push(`kill: ${err.message.split('\n')[0]}`);
        log(`kill failed: ${err.message.split('\n')[0]}`);
      }
    }
  })();

  const loops = [...webs.map(webLoop), ...apps.map(appLoop)];
  const t0 = Date.now();
  const progress = setInterval(() => {
    const acked = [...msgs.values()].filter((r) => r.acked || r.accepted).length;
    log(`${Math.round((Date.now() - t0) / 1000)} s: ${msgs.size} sent, ${acked} acked/accepted; kills ${JSON.stringify(stats.kills)}`);
  }, 15000);
  await sleep(MINUTES * 60000);
  killing = false;
  await killer;
  sending = false;
  await Promise.all(loops);
  clearInterval(progress);
  log('traffic stopped; letting everything settle');

  // ---- settle
  for (const g of gws) await g.waitLink('up', 30000).catch((e) => stats.errors.push(e.message));
  const settleDeadline = Date.now() + Number(opt.settle) * 1000;
  const expected = () => [...msgs.values()].filter((r) => r.acked || r.accepted);
  let rows = new Map();
  for (;;) {
    for (const a of apps) await confirmApp(a);
    rows = await historyRows().catch(() => rows);
    const missing = expected().filter((r) => !r.deliveries.get(r.to) || !rows.get(r.token));
    if (!missing.length || Date.now() > settleDeadline) break;
    await sleep(1000);
  }
  clearInterval(confirmTimer);
  // Offline storage of the web users: only counted where the password is known. Clients
  // stay connected meanwhile (a count logs in without presence).
  const offline = await offlineTotal(webUsers);

  // ---- report
  const table = {};
  for (const dir of ['web→app', 'app→web']) {
    const all = [...msgs.values()].filter((r) => r.dir === dir);
    const ok = all.filter((r) => r.acked || r.accepted);
    const t = { sent: all.length, 'acked/accepted': ok.length, 'refused (told the sender)': all.filter((r) => r.refused).length };
    t['delivered live'] = ok.filter((r) => (r.deliveries.get(r.to)?.live ?? 0) > 0).length;
    t['recovered after reconnect'] = ok.filter((r) => { const d = r.deliveries.get(r.to); return d && !d.live && d.recovered > 0; }).length;
    t['in history'] = ok.filter((r) => rows.get(r.token)).length;
    const lost = ok.filter((r) => !r.deliveries.get(r.to) || !rows.get(r.token));
    t.lost = lost.length;
    // A duplicate is a message the recipient is shown twice after its own de-duplication:
    // the web client drops an id it has seen (ImgwClient), an XMPP app drops a stanza id it
    // has seen (XEP-0359 practice; the same id arriving twice after a server crash is
    // at-least-once delivery, counted apart). So: the same message under two ids, or twice in
    // the history, or (web) the same id emitted twice.
    const dups = ok.filter((r) => {
      const d = r.deliveries.get(r.to);
      const sameIdTwice = dir === 'app→web' && d && [...d.ids.values()].some((c) => c > 1);
      return (d && d.ids.size > 1) || sameIdTwice || (rows.get(r.token) ?? 0) > 1;
    });
    t.duplicated = dups.length;
    t['same id twice at an XMPP app (dropped by id)'] = dir === 'web→app'
      ? ok.filter((r) => [...(r.deliveries.get(r.to)?.ids.values() ?? [])].some((c) => c > 1)).length : '–';
    t['unconfirmed (not acked, in flight at a kill)'] = all.length - ok.length - t['refused (told the sender)'];
    table[dir] = t;
    table[dir].examples = { lost: lost.slice(0, 5).map((r) => r.token), duplicated: dups.slice(0, 5).map((r) => r.token) };
  }

  const lines = [];
  lines.push(`# imgw soak, ${new Date().toISOString().slice(0, 10)}`);
  lines.push('');
  if (EXTERNAL) {
    lines.push(`Command: \`${commandLine}\`  `);
    lines.push(`Server: ${serverName}; ${gws.length} gateways  `);
  } else {
    lines.push(`Command: \`node bench/soak.mjs --minutes ${MINUTES} --web ${W} --app ${M} --rate ${RATE} --kill-every ${KILL_EVERY} --kinds ${KINDS.join(',')} --seed ${SEED}\`  `);
  }
  lines.push(`Machine: ${machine}`);
  lines.push('');
  lines.push('| | web → app | app → web |');
  lines.push('|---|---:|---:|');
  for (const k of Object.keys(table['web→app']).filter((k) => k !== 'examples')) {
    lines.push(`| ${k} | ${table['web→app'][k]} | ${table['app→web'][k]} |`);
  }
  lines.push('');
  lines.push(`Kills (SIGKILL, restarted 1-5 s later): ${Object.entries(stats.kills).map(([k, v]) => `${k} ${v}`).join(', ')}.  `);
  const med = (a) => (a.length ? [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)] : null);
  lines.push(`Time from restart to ready (median ms): ${Object.entries(stats.restartMs).map(([k, v]) => `${k} ${med(v) === null ? '–' : Math.round(med(v))}`).join(', ')}.  `);
  lines.push(`Web clients reconnected ${stats.webReconnects} times, app clients ${stats.appReconnects} times.  `);
  lines.push(`Stored offline for the web users at the end: ${offline.counted ? `${offline.total} (${offline.counted} users counted)` : 'not counted'}.`);
  if (EXTERNAL) lines.push(`\nGateway links: ${linkSummary()}.`);
  if (stats.errors.length) lines.push(`\nErrors: ${stats.errors.slice(0, 10).join('; ')}`);
  for (const dir of Object.keys(table)) {
    const ex = table[dir].examples;
    if (ex.lost.length || ex.duplicated.length) lines.push(`\n${dir}: lost ${ex.lost.join(' ')}; duplicated ${ex.duplicated.join(' ')}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
  // Details of what went wrong, for the post-mortem (stderr).
  for (const dir of Object.keys(table)) {
    for (const token of [...table[dir].examples.lost, ...table[dir].examples.duplicated]) {
      const r = msgs.get(token);
      const d = r.deliveries.get(r.to);
      log(`${token} ${dir} ${r.from}→${r.to} sent +${Math.round((r.sentAt - t0) / 1000)} s id ${r.id ?? '?'}: `
        + `history ${rows.get(token) ?? 0}, at recipient ${d ? JSON.stringify([...d.ids]) : 'never'} (live ${d?.live ?? 0}, recovered ${d?.recovered ?? 0})`);
    }
  }
  for (const [k, when] of killLog) log(`kill at +${Math.round((when - t0) / 1000)} s: ${k}`);
  if (opt.dump) {
    // Everything followed, for a post-mortem: times are ms since the epoch.
    const out = {
      t0, kills: killLog,
      apps: apps.map((a) => ({ user: a.user, events: a.events })),
      messages: [...msgs.values()].map((r) => ({
        ...r, history: rows.get(r.token) ?? 0,
        deliveries: Object.fromEntries([...r.deliveries].map(([u, d]) => [u, { ...d, ids: [...d.ids] }])),
      })),
    };
    fs.writeFileSync(opt.dump, JSON.stringify(out));
    log(`wrote ${opt.dump}`);
  }

  for (const c of webs) c.close();
  for (const a of apps) await within(a.c.stop().catch(() => {}), 5000, 'app stop').catch(() => {});
  const bad = table['web→app'].lost + table['app→web'].lost + table['web→app'].duplicated + table['app→web'].duplicated;
  return opt.check && bad > 0 ? 1 : 0;
}

// ---- run -----------------------------------------------------------------------

let code = 1;
try {
  code = await { soak: scenarioSoak, check: scenarioCheck, burst: scenarioBurst, load: scenarioLoad }[SCENARIO]();
} finally {
  await teardown();
}
process.exit(code);
