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
// Progress goes to stderr, the report (Markdown) to stdout.
import { parseArgs } from 'node:util';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import SockJS from 'sockjs-client';
import { client as xmppClient } from '@xmpp/client';
import xml from '@xmpp/xml';
import { ImgwClient } from '../clients/web/imgw.js';
import { startProsody } from '../tests/lib/prosody.mjs';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { startRedis } from '../tests/lib/redis.mjs';
import { startImgw } from '../tests/lib/imgw.mjs';
import { sleep, until, within } from '../tests/lib/bounded.mjs';

const { values: opt } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    web: { type: 'string', default: '12' },
    app: { type: 'string', default: '4' },
    rate: { type: 'string', default: '1' },
    'kill-every': { type: 'string', default: '20' },
    kinds: { type: 'string', default: 'gateway,prosody,postgres,redis' },
    seed: { type: 'string', default: String(Date.now() % 1000000) },
    settle: { type: 'string', default: '120' },
    check: { type: 'boolean', default: false },
  },
});
const MINUTES = Number(opt.minutes);
const W = Number(opt.web);
const M = Number(opt.app);
const RATE = Number(opt.rate);
const KILL_EVERY = Number(opt['kill-every']);
const KINDS = opt.kinds.split(',').filter(Boolean);
const SEED = Number(opt.seed);
const DOMAIN = 'shop.test';
const GWS = ['gw.shop.test', 'gw2.shop.test'];
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

const webUsers = Array.from({ length: W }, (_, i) => `web${i}`);
const appUsers = Array.from({ length: M }, (_, i) => `app${i}`);
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

// ---- servers -------------------------------------------------------------------

const pg = await startPostgres({ db: 'imgw' });
const redis = await startRedis();
const prosody = await startProsody({
  domain: DOMAIN,
  components: GWS.map((d) => ({ domain: d, secret: 's3cret' })),
  users: [...webUsers, ...appUsers].map((u) => [u, 'pw']),
  companion: { gateway: GWS, adopt: true },
  modules: ['offline'],
  logLevel: 'warn',
});
const spools = GWS.map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-soak-spool-')));
const gws = [];
for (let i = 0; i < GWS.length; i++) {
  gws.push(await startImgw({
    prosody,
    componentDomain: GWS[i],
    config: {
      mode: 'samejid', node_id: i, pg_conninfo: `"${pg.connString}"`, spool_dir: spools[i],
      redis_host: '127.0.0.1', redis_port: redis.port, companion_lease_s: 15, log_level: 'warn',
      max_sessions_per_user: 64,
    },
  }));
}
log(`seed ${SEED}: PostgreSQL :${pg.port}, Redis :${redis.port}, Prosody :${prosody.c2sPort}, gateways :${gws.map((g) => g.port).join(' :')}`);

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

const webs = webUsers.map((user, i) => {
  const gw = gws[i % gws.length];
  const transport = TRANSPORTS[Math.floor(i / gws.length) % TRANSPORTS.length];
  const o = {
    url: gw.wsUrl, user, WebSocket, backoff: { minMs: 100, maxMs: 2000 }, pingIntervalMs: 5000,
    pongTimeoutMs: 5000, fetch: globalThis.fetch, jsonp: 'fetch', pollTimeoutS: 10,
  };
  if (transport === 'jsonp') o.transports = ['jsonp'];
  else if (transport === 'sockjs') o.transport = sockjsTransport(gw.httpUrl);
  else o.transports = ['websocket'];
  const c = new ImgwClient(o);
  c.soak = { user, transport, gw: i % gws.length, seen: new Map() };
  c.on('message', (m) => {
    const token = /soak (\S+)/.exec(m.body)?.[1];
    if (!token || m.own) return;
    const r = msgs.get(token);
    const seen = c.soak.seen.get(token) ?? new Set();
    seen.add(m.id);
    c.soak.seen.set(token, seen);
    if (r) {
      const d = r.deliveries.get(user) ?? { ids: new Map(), recovered: 0, live: 0 };
      d.ids.set(m.id, (d.ids.get(m.id) ?? 0) + 1);
      if (m.recovered) d.recovered++; else d.live++;
      r.deliveries.set(user, d);
    }
  });
  c.on('open', (w) => { if (w.reconnected) stats.webReconnects++; });
  c.on('error', () => {});
  return c;
});
await Promise.all(webs.map((c) => within(c.connect(), 30000, `web client ${c.soak.user} connects`)));
log(`${W} web clients connected (${TRANSPORTS.join(', ')})`);

// ---- app clients ---------------------------------------------------------------

function appClient(user) {
  const c = xmppClient({ service: `xmpp://127.0.0.1:${prosody.c2sPort}`, domain: DOMAIN, resource: 'phone', username: user, password: 'pw' });
  const a = { user, c, unconfirmed: [], seq: 0, online: false, seen: new Map() };
  c.on('error', () => {});
  c.on('online', async () => {
    if (a.everOnline) stats.appReconnects++;
    a.everOnline = true;
    a.online = true;
    try {
      await c.send(xml('presence'));
      // What the server had not accepted before the connection broke goes again, same id.
      for (const u of a.unconfirmed) await c.send(u.stanza);
    } catch { /* the next online event tries again */ }
  });
  c.on('offline', () => { a.online = false; });
  c.on('disconnect', () => { a.online = false; });
  c.on('stanza', (st) => {
    if (!st.is('message') || st.attrs.type === 'error') return;
    const body = st.getChildText('body') || '';
    const token = /soak (\S+)/.exec(body)?.[1];
    if (!token) return;
    const r = msgs.get(token);
    const ids = a.seen.get(token) ?? new Map();
    ids.set(st.attrs.id, (ids.get(st.attrs.id) ?? 0) + 1);
    a.seen.set(token, ids);
    if (r) r.deliveries.set(user, { ids, recovered: 0, live: 1 });
  });
  return a;
}
const apps = appUsers.map(appClient);
await Promise.all(apps.map((a) => within(a.c.start(), 20000, `app ${a.user} logs in`)));
log(`${M} app clients online`);

/** Confirms an app's sends: a ping answered means everything written before it was accepted. */
async function confirmApp(a) {
  if (!a.online || !a.unconfirmed.length) return;
  const upto = a.unconfirmed.length;
  try {
    await a.c.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    for (const u of a.unconfirmed.splice(0, upto)) msgs.get(u.token).accepted = true;
  } catch { /* not confirmed: stays for the resend after reconnect */ }
}

// ---- traffic -------------------------------------------------------------------

let sending = true;
let n = 0;
async function webLoop(c) {
  while (sending) {
    await sleep(1000 / RATE * (0.5 + random()));
    if (!sending) break;
    const to = pick(appUsers);
    const token = `w${++n}`;
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
    const to = pick(webUsers);
    const token = `a${++n}`;
    const stanza = xml('message', { to: `${to}@${DOMAIN}`, type: 'chat', id: `${a.user}-${++a.seq}` }, xml('body', {}, `soak ${token}`));
    record(token, { dir: 'app→web', from: a.user, to, id: stanza.attrs.id, sentAt: Date.now() });
    a.unconfirmed.push({ token, stanza });
    if (a.online) a.c.send(stanza).catch(() => {});
  }
}
const confirmTimer = setInterval(() => { for (const a of apps) confirmApp(a); }, 250);

// ---- killing -------------------------------------------------------------------

const targets = {
  gateway: () => pick(gws),
  prosody: () => prosody,
  postgres: () => pg,
  redis: () => redis,
};
async function killOne(kind) {
  const t = targets[kind]();
  const name = kind === 'gateway' ? `gateway :${t.port}` : kind;
  const t0 = Date.now();
  if (kind === 'gateway') await t.kill();
  else if (kind === 'postgres') await t.kill();
  else if (kind === 'redis') await t.stop('SIGKILL');
  else process.kill(t.pid(), 'SIGKILL');
  stats.kills[kind]++;
  killLog.push([name, t0]);
  const down = 1000 + random() * 4000;
  log(`killed ${name}; restarting in ${(down / 1000).toFixed(1)} s`);
  await sleep(down);
  if (kind === 'prosody') {
    await within((async () => { while (t.pid()) await sleep(20); })(), 10000, 'prosody gone');
    await t.start();
  } else {
    await t.start();
  }
  stats.restartMs[kind].push(Date.now() - t0 - down);
  if (kind === 'gateway') await t.waitLink('up', 20000).catch((e) => stats.errors.push(e.message));
}
const killLog = [];
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

// ---- settle --------------------------------------------------------------------

for (const g of gws) await g.waitLink('up', 30000).catch((e) => stats.errors.push(e.message));
const settleDeadline = Date.now() + Number(opt.settle) * 1000;
const expected = () => [...msgs.values()].filter((r) => r.acked || r.accepted);
async function historyRows() {
  const out = await pg.psql("SELECT substring(body from 'soak (\\S+)'), count(*) FROM messages WHERE body LIKE 'soak %' GROUP BY 1", { fieldSep: '|' });
  const rows = new Map();
  for (const line of out.split('\n').filter(Boolean)) {
    const [token, count] = line.split('|');
    rows.set(token, Number(count));
  }
  return rows;
}
let rows = new Map();
for (;;) {
  for (const a of apps) await confirmApp(a);
  rows = await historyRows().catch(() => rows);
  const missing = expected().filter((r) => !r.deliveries.get(r.to) || !rows.get(r.token));
  if (!missing.length || Date.now() > settleDeadline) break;
  await sleep(1000);
}
clearInterval(confirmTimer);

// ---- report --------------------------------------------------------------------

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
lines.push(`Command: \`node bench/soak.mjs --minutes ${MINUTES} --web ${W} --app ${M} --rate ${RATE} --kill-every ${KILL_EVERY} --kinds ${KINDS.join(',')} --seed ${SEED}\`  `);
lines.push(`Machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`);
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
lines.push(`Web clients reconnected ${stats.webReconnects} times, app clients ${stats.appReconnects} times.`);
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

// ---- teardown ------------------------------------------------------------------

for (const c of webs) c.close();
for (const a of apps) await within(a.c.stop().catch(() => {}), 5000, 'app stop').catch(() => {});
for (const g of gws) await g.cleanup().catch((e) => log(`gateway cleanup: ${e.message.split('\n')[0]}`));
await prosody.cleanup();
await redis.cleanup();
await pg.cleanup();
for (const d of spools) fs.rmSync(d, { recursive: true, force: true });
const bad = table['web→app'].lost + table['app→web'].lost + table['web→app'].duplicated + table['app→web'].duplicated;
process.exit(opt.check && bad > 0 ? 1 : 0);
