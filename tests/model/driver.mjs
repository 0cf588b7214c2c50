// Drives the real gateway and the reference model (model.mjs) with the same random
// sequence of operations and compares every answer.
//
// Servers (startServers): Prosody with the imgw companion, the gateway in same-JID mode,
// PostgreSQL and Redis, all real, on private loopback ports. Per seed (runSeed): 3 users
// with 3 tabs each, one tab per transport: a WebSocket (/ws), sockjs-client 1.6 (one of
// its Node transports per user: websocket, xhr-streaming, xhr-polling; eventsource with
// --check eventsource, see below) and the JSONP/HTTP API (/api/*, long poll, answers as
// JSON or JSONP, sends with a line break as POST forms). Operations: sends, retries (same
// cid), reads forwards and backwards and with foreign ids, opens, history pages, chat
// lists, reconnects with last_id, bursts of concurrent sends (with a reconnect among
// them), gateway restarts (SIGTERM or SIGKILL), Redis FLUSHALL and PostgreSQL restarts.
//
// How answers are compared. Each tab has a queue of expected frames; a frame received
// must equal the next one expected (key order aside). Operations run one at a time and
// each waits until every tab has received what it expects, so the order of frames on a
// tab is deterministic, except:
//   * bursts: several sends at once. Each tab must receive exactly the expected set of
//     frames; the order is checked only within one conversation and one sender (the
//     gateway keeps that order; frames of different senders race each other);
//   * a reconnect inside a burst: the session must get every message after its last_id
//     exactly once, either replayed (recovered: true, before "recovered") or live, and
//     "recovered" counts the replayed ones: which ones are replayed depends on timing;
//   * after a SIGKILL the XMPP server resends copies the killed gateway had not
//     acknowledged (at least once): a repeat of a message the tab already has, identical
//     to it, is allowed (docs/protocol.md: clients drop ids they already have);
//   * chats while PostgreSQL is down: the cached list (exact) or `unavailable`.
// Checks of issues owned elsewhere are off unless asked for (run.mjs --check NAME,... or
// --strict for all): `retry` a retry after a gateway restart gets the original id (issue
// 11 item 1); `ts` the recipient's live `ts` equals the ack's (item 5); `eventsource` the
// SockJS eventsource transport is used too (its frames must %-escape '%', which
// sockjs-client decodes with decodeURI).
export const CHECKS = ['retry', 'ts', 'eventsource'];
import WebSocket from 'ws';
import SockJS from 'sockjs-client';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { ChatModel, viaXmpp } from './model.mjs';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { startImgw } from '../lib/imgw.mjs';
import { scaled, sleep, until, within } from '../lib/bounded.mjs';

export const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const SETTLE_MS = 15000;

/** A small seeded PRNG (mulberry32): the same seed gives the same operations. */
export function makeRng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (arr) => arr[Math.floor(next() * arr.length)],
    chance: (p) => next() < p,
  };
}

export class Mismatch extends Error {}

// ---- servers ---------------------------------------------------------------------------

export async function startServers() {
  const spool = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-model-spool-'));
  const s = { spool };
  try {
    s.pg = await startPostgres({ db: 'imgw' });
    s.redis = await startRedis();
    s.prosody = await startProsody({
      domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }],
      companion: { gateway: GW }, modules: ['offline'], logLevel: 'info',
    });
    s.gw = await startImgw({
      prosody: s.prosody,
      config: {
        mode: 'samejid', pg_conninfo: `"${s.pg.connString}"`, redis_host: '127.0.0.1',
        redis_port: s.redis.port, spool_dir: spool, max_sessions_per_user: 64,
        auth_timeout_ms: 20000, drain_timeout_ms: 2000,
      },
    });
    await waitReady(s.gw);
  } catch (err) {
    await stopServers(s).catch(() => {});
    throw err;
  }
  return s;
}

/**
 * Waits until the gateway answers history queries: right after a start its PostgreSQL
 * reader may still be connecting, and reads answer `unavailable` meanwhile (as documented).
 */
export async function waitReady(gw) {
  const ws = new WebSocket(gw.wsUrl);
  const frames = [];
  ws.on('message', (d) => frames.push(JSON.parse(d.toString('utf8'))));
  ws.on('error', () => {});
  try {
    await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 10000, 'probe open');
    ws.send(JSON.stringify({ op: 'hello', v: 1, user: 'readiness_probe' }));
    await until('probe welcome', 10000, () => frames.some((f) => f.op === 'welcome'));
    await until('gateway reads history', 30000, async () => {
      frames.length = 0;
      ws.send(JSON.stringify({ op: 'history', with: 'nobody', limit: 1 }));
      await until('probe answer', 10000, () => frames.some((f) => f.op === 'history' || f.op === 'error'));
      if (frames.some((f) => f.op === 'history')) return true;
      await sleep(100);
      return false;
    }, () => gw.logText());
  } finally {
    ws.terminate();
  }
}

/** Stops everything; rethrows the gateway's cleanup error (a sanitizer report in its log). */
export async function stopServers(s) {
  let err = null;
  await s.gw?.cleanup().catch((e) => { err = e; });
  await s.prosody?.cleanup().catch(() => {});
  await s.redis?.cleanup().catch(() => {});
  await s.pg?.cleanup().catch(() => {});
  if (s.spool) fs.rmSync(s.spool, { recursive: true, force: true });
  if (err) throw err;
}

// ---- tabs: one client per transport, all with the same interface -----------------------

const jsonp = (text) => {
  const m = /^(?:\/\*\*\/)?[A-Za-z_$][\w$]*\(([\s\S]*)\);?\s*$/.exec(text);
  if (!m) throw new Error(`not a JSONP answer: ${text.slice(0, 200)}`);
  return JSON.parse(m[1]);
};

class Tab {
  constructor(run, index, user, transport) {
    this.run = run;
    this.index = index;
    this.user = user;
    this.transport = transport; // 'ws', 'sockjs:<transport>', 'api'
    this.inbox = [];
    this.expected = [];
    this.maxSeen = 0n;
    this.seen = new Map(); // id -> a frame of it, for repeats after a SIGKILL
    this.live = false;
  }

  get name() { return `tab ${this.index} (${this.user}, ${this.transport})`; }

  onFrame(f) {
    delete f.__binary;
    // Arrival order, for the order checks of bursts (not enumerable: not compared).
    Object.defineProperty(f, 'arrival', { value: ++this.run.arrivals });
    if ((f.op === 'msg' || f.op === 'ack') && /^\d+$/.test(f.id ?? '')) {
      const id = BigInt(f.id);
      if (id > this.maxSeen) this.maxSeen = id;
    }
    this.inbox.push(f);
    this.run.pump(this);
  }

  async connect(lastId) {
    this.gen = (this.gen ?? 0) + 1;
    const gen = this.gen;
    const url = this.run.servers.gw;
    const hello = { op: 'hello', v: 1, user: this.user };
    if (lastId) hello.last_id = String(lastId);
    if (this.transport === 'ws') {
      const ws = new WebSocket(url.wsUrl, { maxPayload: 64 * 1024 * 1024 });
      this.ws = ws;
      ws.on('message', (d) => { if (this.gen === gen) this.onFrame(JSON.parse(d.toString('utf8'))); });
      ws.on('error', () => {});
      this.closedP = new Promise((r) => ws.on('close', r));
      await within(new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); }), 10000, `${this.name} open`);
      ws.send(JSON.stringify(hello));
    } else if (this.transport.startsWith('sockjs:')) {
      const sock = new SockJS(`${url.httpUrl}/sockjs/chat`, null, { transports: [this.transport.slice(7)], timeout: 8000 });
      this.sock = sock;
      this.closedP = new Promise((r) => { sock.onclose = r; });
      sock.onmessage = (e) => { if (this.gen === gen) this.onFrame(JSON.parse(e.data)); };
      await within(new Promise((resolve, reject) => { sock.onopen = resolve; this.closedP.then(() => reject(new Error('closed before open'))); }), 10000, `${this.name} open`);
      sock.send(JSON.stringify(hello));
    } else {
      const q = { user: this.user };
      if (lastId) q.last_id = String(lastId);
      const a = await this.api('login', q);
      if (a.token) {
        this.token = a.token;
        this.onFrame({ op: 'welcome', user: a.user, jid: a.jid, session: a.session });
        this.polling = this.pollLoop(gen);
      } else {
        this.onFrame({ op: 'error', ...a.error });
      }
    }
  }

  /**
   * One API call; JSONP now and then (the callback's argument is the same object). post:
   * the parameters as a form body (sends whose body has a line break: GET query strings
   * with %0A or %0D are refused, see the report of issue 11).
   */
  async api(ep, params, { post = false } = {}) {
    const q = new URLSearchParams({ ...params });
    // Every third call as JSONP (not from the seeded generator: polls run on their own).
    this.calls = (this.calls ?? 0) + 1;
    const cb = this.calls % 3 === 0 && !post ? `cb_${this.index}` : null;
    if (cb) q.set('callback', cb);
    const base = `${this.run.servers.gw.httpUrl}/api/${ep}`;
    const res = post
      ? await fetch(base, { method: 'POST', body: q, signal: AbortSignal.timeout(scaled(30000)) })
      : await fetch(`${base}?${q}`, { signal: AbortSignal.timeout(scaled(30000)) });
    const text = await res.text();
    const v = cb && res.status === 200 ? jsonp(text) : JSON.parse(text);
    return v;
  }

  async pollLoop(gen) {
    while (this.gen === gen && this.token) {
      let v;
      try {
        v = await this.api('poll', { token: this.token, timeout: 2 });
      } catch {
        return;
      }
      if (this.gen !== gen) return;
      if (v.error) return; // bad_token / closed: the session is gone
      for (const f of v.frames) this.onFrame(f);
    }
  }

  /** Sends one protocol frame; on the API the answer comes back as the HTTP response. */
  request(f) {
    if (this.transport === 'ws') return this.ws.send(JSON.stringify(f));
    if (this.sock) return this.sock.send(JSON.stringify(f));
    const p = { token: this.token };
    if (f.op === 'send') Object.assign(p, { to: f.to, body: f.body, cid: f.cid }, f.kind ? { kind: f.kind } : {});
    if (f.op === 'history') Object.assign(p, { with: f.with }, f.before ? { before: f.before } : {}, f.limit ? { limit: f.limit } : {});
    if (f.op === 'chats' && f.limit) p.limit = f.limit;
    if (f.op === 'read') Object.assign(p, { with: f.with, id: f.id });
    if (f.op === 'open' && f.with) p.with = f.with;
    const gen = this.gen;
    this.api(f.op, p, { post: f.op === 'send' && /[\r\n]/.test(f.body) }).then((v) => {
      if (this.gen !== gen) return;
      this.onFrame(v.error ? { op: 'error', ...v.error } : v);
    }, (err) => {
      this.run.fail(this, `API ${f.op} failed: ${err.message}`);
    });
    return undefined;
  }

  async close() {
    const gen = this.gen;
    this.gen = (this.gen ?? 0) + 1; // frames still in flight to the old connection are ignored
    this.live = false;
    if (this.ws) {
      this.ws.close();
      await within(this.closedP, 5000, `${this.name} close`).catch(() => this.ws.terminate());
      this.ws = null;
    } else if (this.sock) {
      this.sock.close();
      await within(this.closedP, 5000, `${this.name} close`).catch(() => {});
      this.sock = null;
    } else if (this.token) {
      const token = this.token;
      this.token = null;
      await this.api('logout', { token }).catch(() => {});
      await within(this.polling ?? Promise.resolve(), 10000, `${this.name} poll end`).catch(() => {});
    }
    return gen;
  }
}

// ---- matching ---------------------------------------------------------------------------

function normalize(f, { ignoreTs = false } = {}) {
  const g = { ...f };
  delete g.__binary;
  if (g.op === 'welcome') { delete g.session; delete g.v; }
  if (g.op === 'error') delete g.reason;
  if (ignoreTs && g.op === 'msg') delete g.ts;
  return g;
}

const show = (x) => JSON.stringify(x, (k, v) => (typeof v === 'bigint' ? v.toString() : v));

/** An expectation: a frame to equal, or a predicate with a description. */
function exact(frame, opts = {}) {
  const want = normalize(frame, opts);
  return { desc: show(want), test: (f) => isDeepStrictEqual(normalize(f, opts), want) };
}

// ---- one seed ------------------------------------------------------------------------------

const BODIES = [
  'hi', 'hello there', 'ünïcödé 😀 ok', 'quote " and \\ backslash', '<b>&amp;</b> ]]>', 'tab\tin', 'line\nbreak',
  'crlf\r\nline', 'bare\rcr', '  spaces around  ', "it's", '$1 %s %n {}', 'x'.repeat(250), 'é'.repeat(230),
  '😀'.repeat(210), 'a'.repeat(199) + 'é€😀',
];

/**
 * Runs `ops` random operations for `seed` against servers and the model.
 * Returns { ops, counts, tolerated }; throws Mismatch (with the details) on a difference.
 * @param {{ servers: object, seed: number, ops: number, checks?: string[], log?: (s: string) => void,
 *           restarts?: boolean, tag?: string }} o
 */
export async function runSeed(o) {
  const run = new SeedRun(o);
  try {
    await run.start();
    await run.loop();
    await run.finish();
  } finally {
    await run.stop();
  }
  return { ops: run.done, counts: run.counts, tolerated: run.tolerated };
}

class SeedRun {
  constructor({ servers, seed, ops, checks = [], log = () => {}, restarts = true, tag = '' }) {
    this.servers = servers;
    this.seed = seed;
    this.total = ops;
    this.checks = new Set(checks);
    this.log = log;
    this.restarts = restarts;
    this.rng = makeRng(seed);
    this.model = new ChatModel({ domain: DOMAIN });
    this.done = 0;
    this.counts = {};
    this.tolerated = 0;
    this.dupOkBelow = 0n; // after a SIGKILL: repeats of messages up to this id are allowed
    this.unordered = false;
    this.arrivals = 0;
    this.failure = null;
    this.nextCid = 1;
    this.maxId = 0n;
    const p = `m${(seed >>> 0).toString(36)}${tag}`;
    this.users = [`${p}a`, `${p}b`, `${p}c`];
    this.tabs = [];
    // eventsource only when checked: the gateway does not %-escape its frames and
    // sockjs-client's decodeURI throws on a '%' in a message (reported with issue 11).
    const sockjsKinds = ['websocket', 'xhr-streaming', 'xhr-polling', ...(this.checks.has('eventsource') ? ['eventsource'] : [])];
    for (const u of this.users) {
      for (const t of ['ws', `sockjs:${this.rng.pick(sockjsKinds)}`, 'api']) {
        const i = this.model.addTab(u);
        this.tabs.push(new Tab(this, i, u, t));
      }
    }
  }

  fail(tab, what) {
    if (!this.failure) this.failure = new Mismatch(`seed ${this.seed}, op ${this.done} (${this.current}): ${tab ? tab.name : ''}: ${what}`);
  }

  /** Matches a tab's received frames against what it expects. */
  pump(tab) {
    if (this.unordered) {
      for (let i = 0; i < tab.inbox.length;) {
        const k = tab.expected.findIndex((e) => e.test(tab.inbox[i]));
        if (k < 0) { i++; continue; }
        const [e] = tab.expected.splice(k, 1);
        const [f] = tab.inbox.splice(i, 1);
        e.got?.(f);
      }
      return;
    }
    while (tab.inbox.length && tab.expected.length) {
      const f = tab.inbox[0];
      const e = tab.expected[0];
      if (!e.test(f)) {
        if (this.repeat(tab, f)) continue;
        this.fail(tab, `expected ${e.desc}\n  got ${show(f)}\n  then ${show(tab.inbox.slice(1, 4))}`);
        return;
      }
      tab.inbox.shift();
      tab.expected.shift();
      e.got?.(f);
    }
  }

  /** A repeat of a message the tab has, allowed after a SIGKILL: dropped (and counted). */
  repeat(tab, f) {
    if (f.op !== 'msg' || !/^\d+$/.test(f.id ?? '') || BigInt(f.id) > this.dupOkBelow) return false;
    const m = this.model.byId.get(f.id);
    if (!m || f.recovered) return false;
    const viewer = tab.user;
    const want = this.model.msgFrame(m, viewer, { open: f.open, live: true });
    if (!isDeepStrictEqual(normalize(f, { ignoreTs: true }), normalize(want, { ignoreTs: true }))) return false;
    tab.inbox.splice(tab.inbox.indexOf(f), 1);
    this.tolerated++;
    return true;
  }

  expect(tab, e) {
    tab.expected.push(e);
    this.pump(tab);
  }

  /** Awaits p, bounded, and gives up at once when a difference was found meanwhile. */
  async wait(p, what) {
    let v;
    let done = false;
    p.then((x) => { v = x; done = true; });
    await until(`seed ${this.seed} op ${this.done}: ${what}`, SETTLE_MS, () => done || this.failure).catch((err) => this.fail(null, err.message));
    if (this.failure) throw this.failure;
    return v;
  }

  /** Waits until every tab has received what it expects; then nothing else may be there. */
  async settle(tabs = this.tabs, ms = SETTLE_MS) {
    try {
      await until(`seed ${this.seed} op ${this.done} settles`, ms, () => this.failure || tabs.every((t) => t.expected.length === 0));
    } catch {
      const t = tabs.find((x) => x.expected.length);
      this.fail(t, `missing ${t.expected.length} frame(s), first ${t.expected[0].desc}\n  inbox ${show(t.inbox.slice(0, 5))}`);
    }
    if (this.failure) throw this.failure;
    for (const t of tabs) {
      for (const f of [...t.inbox]) {
        if (!this.repeat(t, f)) this.fail(t, `unexpected ${show(f)}`);
      }
    }
    if (this.failure) throw this.failure;
  }

  count(op) { this.counts[op] = (this.counts[op] ?? 0) + 1; }

  // ---- lifecycle -----------------------------------------------------------------------

  async start() {
    this.current = 'connect';
    for (const t of this.tabs) await this.connect(t, null);
    await this.settle();
  }

  async connect(tab, lastId) {
    const mt = this.model.tabs[tab.index];
    mt.open = null;
    this.expect(tab, exact(this.model.welcome(tab.user)));
    if (lastId) for (const f of this.model.recovery(tab.user, lastId)) this.expect(tab, exact(f));
    mt.connected = true; // nothing happens live while it connects (operations run one by one)
    await tab.connect(lastId);
  }

  async stop() {
    await Promise.all(this.tabs.map((t) => t.close().catch(() => {})));
  }

  async finish() {
    this.current = 'final check';
    // Every tab's view of every conversation, and nothing arriving late.
    for (const t of this.tabs) {
      this.expect(t, exact(this.model.chats(t.user, 100)));
      t.request({ op: 'chats', limit: 100 });
    }
    await this.settle();
    await sleep(300);
    await this.settle();
  }

  async loop() {
    const plan = new Map();
    if (this.restarts && this.total >= 40) {
      // At least one of each outage per seed, at seed-determined points.
      plan.set(Math.floor(this.total * (0.25 + 0.1 * this.rng.next())), 'restart');
      plan.set(Math.floor(this.total * (0.55 + 0.1 * this.rng.next())), 'pgRestart');
      plan.set(Math.floor(this.total * (0.4 + 0.1 * this.rng.next())), 'redisFlush');
    }
    while (this.done < this.total) {
      const op = plan.get(this.done) ?? this.pickOp();
      this.current = op;
      await this[`op_${op}`]();
      this.count(op);
      this.done++;
    }
  }

  pickOp() {
    const r = this.rng.next();
    const table = [
      [0.30, 'send'], [0.05, 'retry'], [0.13, 'read'], [0.07, 'open'], [0.10, 'history'],
      [0.10, 'chats'], [0.08, 'reconnect'], [0.08, 'burst'], [0.02, 'redisFlush'],
      [this.restarts ? 0.005 : 0, 'restart'], [this.restarts ? 0.005 : 0, 'pgRestart'],
    ];
    let acc = 0;
    for (const [w, op] of table) {
      acc += w;
      if (r < acc) return op;
    }
    return 'send';
  }

  tab() { return this.rng.pick(this.tabs); }
  otherUser(u) { return this.rng.pick(this.users.filter((x) => x !== u)); }
  body() {
    return this.rng.chance(0.7) ? `${this.rng.pick(BODIES)} #${this.nextCid}` : this.rng.pick(BODIES);
  }

  // ---- operations ----------------------------------------------------------------------

  /** Expects the ack of a new message and returns it once received. */
  ackOf(tab, cid) {
    return new Promise((resolve) => {
      this.expect(tab, {
        desc: `a new ack for ${cid}`,
        test: (f) => {
          if (f.op !== 'ack' || f.cid !== cid || f.queued !== false || !/^\d{1,19}$/.test(f.id) || typeof f.ts !== 'number') return false;
          if (BigInt(f.id) <= this.maxId) {
            this.fail(tab, `ack id ${f.id} is not above every earlier id (${this.maxId}): ids must grow`);
            return false;
          }
          return true;
        },
        got: resolve,
      });
    });
  }

  /** A send to user id `to`, named by id or by bare JID (asJid). */
  async send(tab, { to, asJid = false, body, kind, cid }) {
    const f = { op: 'send', to: asJid ? this.model.jid(to) : to, body, cid };
    if (kind) f.kind = kind;
    const k = this.model.sendKind(tab.user, cid, { acrossRestart: this.checks.has('retry') });
    if (k.retry) {
      this.expect(tab, exact(this.model.ackFrame(k.msg)));
      tab.request(f);
      await this.settle();
      return;
    }
    const ackP = this.ackOf(tab, cid);
    tab.request(f);
    const ack = await this.wait(ackP, `ack of ${cid}`);
    const m = this.model.addMessage({ from: tab.user, to, body, kind: kind ?? 'text', cid, id: ack.id, ts: ack.ts });
    if (m.id > this.maxId) this.maxId = m.id;
    for (const [t, fr] of this.model.deliveries(m, tab.index)) {
      this.expect(this.tabs[t], exact(fr, { ignoreTs: !this.checks.has('ts') && this.tabs[t].user !== m.from }));
    }
    await this.settle();
  }

  async op_send() {
    const t = this.tab();
    const to = this.otherUser(t.user);
    const image = this.rng.chance(0.05);
    await this.send(t, {
      to,
      asJid: this.rng.chance(0.5),
      body: image ? `https://chat.example/files/${'a'.repeat(32)}.png` : this.body(),
      kind: image ? 'image' : this.rng.chance(0.1) ? 'text' : undefined,
      cid: `c${this.nextCid++}`,
    });
  }

  async op_retry() {
    const t = this.tab();
    const pool = [...(this.checks.has('retry') ? this.model.storedCids : this.model.cids).values()].filter((m) => m.from === t.user);
    if (!pool.length) return this.op_send();
    const m = this.rng.pick(pool);
    // Same cid, maybe another body or recipient: the first send is what counts.
    await this.send(t, { to: this.rng.chance(0.7) ? m.to : this.otherUser(t.user), body: this.rng.chance(0.7) ? m.body : 'changed', cid: m.cid });
  }

  async op_read() {
    const t = this.tab();
    const peer = this.rng.chance(0.05) ? 'nobody' : this.otherUser(t.user);
    const conv = this.model.conv(t.user, peer);
    const any = this.model.messages;
    const r = this.rng.next();
    let id;
    if (conv.length && r < 0.45) id = conv[conv.length - 1].idText;                  // to the end
    else if (conv.length && r < 0.75) id = this.rng.pick(conv).idText;                // anywhere: forwards or back
    else if (any.length && r < 0.88) id = this.rng.pick(any).idText;                  // another conversation's id
    else id = this.rng.pick(['1', '9223372036854775807', String(this.maxId + 1000n)]); // unknown ids
    const res = this.model.read(t.user, peer, id);
    if (res.moved) {
      for (const i of this.model.liveTabs(t.user)) this.expect(this.tabs[i], exact(res.frame));
    } else {
      this.expect(t, exact(res.frame));
    }
    t.request({ op: 'read', with: this.rng.chance(0.5) ? peer : this.model.jid(peer), id });
    await this.settle();
  }

  async op_open() {
    const t = this.tab();
    const peer = this.rng.chance(0.2) ? null : this.otherUser(t.user);
    this.expect(t, exact(this.model.open(t.index, peer)));
    if (t.transport === 'api' && peer === null) t.request({ op: 'open' });
    else t.request({ op: 'open', with: peer === null ? null : this.rng.chance(0.5) ? peer : this.model.jid(peer) });
    await this.settle();
  }

  async op_history() {
    const t = this.tab();
    const peer = this.otherUser(t.user);
    const conv = this.model.conv(t.user, peer);
    const limit = this.rng.chance(0.6) ? 1 + this.rng.int(6) : this.rng.chance(0.5) ? undefined : 1 + this.rng.int(100);
    let before = null;
    if (conv.length && this.rng.chance(0.5)) before = this.rng.pick(conv).idText;
    else if (this.model.messages.length && this.rng.chance(0.2)) before = this.rng.pick(this.model.messages).idText;
    this.expect(t, exact(this.model.history(t.user, peer, before, limit ?? 50)));
    const f = { op: 'history', with: peer };
    if (before) f.before = before;
    if (limit) f.limit = limit;
    t.request(f);
    await this.settle();
  }

  async op_chats() {
    const t = this.tab();
    const limit = this.rng.chance(0.3) ? 1 + this.rng.int(3) : undefined;
    this.expect(t, exact(this.model.chats(t.user, limit ?? 50)));
    t.request(limit ? { op: 'chats', limit } : { op: 'chats' });
    await this.settle();
  }

  lastIdFor(tab) {
    const r = this.rng.next();
    const mine = this.model.messages.filter((m) => m.from === tab.user || m.to === tab.user);
    if (r < 0.5 && tab.maxSeen > 0n) return tab.maxSeen;
    if (r < 0.8 && mine.length) return this.rng.pick(mine).id;
    return null;
  }

  async op_reconnect() {
    const t = this.tab();
    await t.close();
    this.model.tabs[t.index].connected = false;
    await this.connect(t, this.lastIdFor(t));
    await this.settle();
  }

  /**
   * Several sends at once from different tabs, and now and then one more tab reconnecting
   * meanwhile. Compared as sets per tab (see the top of this file).
   */
  async op_burst() {
    const n = 2 + this.rng.int(3);
    const senders = [];
    const pool = [...this.tabs];
    while (senders.length < n && pool.length) senders.push(pool.splice(this.rng.int(pool.length), 1)[0]);
    // A reconnect needs a last_id ("0" is not one): only once some message exists.
    const rec = this.rng.chance(0.5) && this.maxId > 0n ? pool[this.rng.int(pool.length)] : null;
    const plans = senders.map((t) => ({ t, to: this.otherUser(t.user), body: this.body(), cid: `c${this.nextCid++}` }));
    let recLast = null;
    if (rec) {
      await rec.close();
      this.model.tabs[rec.index].connected = false;
      this.model.tabs[rec.index].open = null;
      recLast = this.lastIdFor(rec) ?? this.maxId;
    }
    this.unordered = true;
    const order = new Map(); // tab -> msg frames in arrival order
    const acks = plans.map((p) => this.ackOf(p.t, p.cid));
    let recDone = Promise.resolve();
    const recFrames = [];
    if (rec) {
      // Welcome first, then each message after last_id once (replayed or live), "recovered".
      rec.expected.push(exact(this.model.welcome(rec.user)));
      recDone = rec.connect(recLast);
    }
    for (const p of plans) p.t.request({ op: 'send', to: p.to, body: p.body, cid: p.cid });
    const got = await this.wait(Promise.all(acks), 'acks of the burst');
    await recDone;
    const msgs = plans.map((p, i) => this.model.addMessage({ from: p.t.user, to: p.to, body: p.body, cid: p.cid, id: got[i].id, ts: got[i].ts }));
    for (const m of msgs) if (m.id > this.maxId) this.maxId = m.id;
    for (const m of msgs) {
      for (const [ti, fr] of this.model.deliveries(m, plans.find((p) => p.cid === m.cid).t.index)) {
        if (this.tabs[ti] === rec) continue;
        const tab = this.tabs[ti];
        const e = exact(fr, { ignoreTs: !this.checks.has('ts') && tab.user !== m.from });
        e.got = (f) => { if (!order.has(tab)) order.set(tab, []); order.get(tab).push(f); };
        this.expect(tab, e);
      }
    }
    if (rec) {
      this.model.tabs[rec.index].connected = true;
      for (const m of this.model.missed(rec.user, recLast)) {
        const replayed = this.model.msgFrame(m, rec.user, { recovered: true });
        const live = msgs.includes(m) ? this.model.msgFrame(m, rec.user, { live: true }) : null;
        const ignoreTs = !this.checks.has('ts') && m.from !== rec.user;
        this.expect(rec, {
          desc: `${show(replayed)} (or live)`,
          test: (f) => isDeepStrictEqual(normalize(f), normalize(replayed)) ||
            (live !== null && isDeepStrictEqual(normalize(f, { ignoreTs }), normalize(live, { ignoreTs }))),
          got: (f) => recFrames.push(f),
        });
      }
      this.expect(rec, { desc: 'recovered', test: (f) => f.op === 'recovered' && f.reset === false, got: (f) => recFrames.push(f) });
    }
    try {
      await this.settle();
    } finally {
      this.unordered = false;
    }
    // Orders that hold whatever the timing: per tab, one sender's messages in one conversation ascend.
    for (const [tab, frames] of order) {
      const last = new Map();
      frames.sort((a, b) => a.arrival - b.arrival);
      for (const f of frames) {
        const k = `${f.conv}|${f.from}`;
        if (last.has(k) && BigInt(last.get(k)) > BigInt(f.id)) this.fail(tab, `out of order in ${k}: ${last.get(k)} before ${f.id}`);
        last.set(k, f.id);
      }
    }
    if (rec) {
      recFrames.sort((a, b) => a.arrival - b.arrival);
      const at = recFrames.findIndex((f) => f.op === 'recovered');
      const replayed = recFrames.filter((f) => f.recovered);
      if (recFrames.slice(at + 1).some((f) => f.recovered)) this.fail(rec, 'a replayed message after "recovered"');
      if (recFrames[at].count !== replayed.length) this.fail(rec, `recovered.count ${recFrames[at].count}, ${replayed.length} replayed`);
      for (let i = 1; i < replayed.length; i++) {
        if (BigInt(replayed[i - 1].id) >= BigInt(replayed[i].id)) this.fail(rec, 'replay not in id order');
      }
    }
    if (this.failure) throw this.failure;
  }

  async reconnectAll() {
    for (const t of this.tabs) {
      this.model.tabs[t.index].connected = false;
      const last = t.maxSeen > 0n ? t.maxSeen : null;
      await this.connect(t, last);
    }
    await this.settle();
  }

  async op_restart() {
    const kill = this.rng.chance(0.5);
    const gw = this.servers.gw;
    this.log(`seed ${this.seed}: gateway ${kill ? 'SIGKILL' : 'SIGTERM'} and start`);
    if (kill) {
      await gw.kill();
      // The XMPP server resends copies the dead gateway had not acknowledged.
      this.dupOkBelow = this.maxId;
    } else {
      await gw.stop();
    }
    await Promise.all(this.tabs.map((t) => t.close().catch(() => {})));
    for (const t of this.tabs) this.model.tabs[t.index].connected = false;
    for (const t of this.tabs) { t.inbox.length = 0; }
    this.model.forgetCids();
    await gw.start();
    await waitReady(gw);
    await this.reconnectAll();
  }

  async op_redisFlush() {
    await this.servers.redis.cli('FLUSHALL');
  }

  /** PostgreSQL stops: sends go to the spool and are delivered; reads fail; then it is back. */
  async op_pgRestart() {
    const { pg, gw } = this.servers;
    this.log(`seed ${this.seed}: PostgreSQL restart`);
    await pg.stop();
    const n = 1 + this.rng.int(4);
    for (let i = 0; i < n; i++) {
      const r = this.rng.next();
      const t = this.tab();
      if (r < 0.5) {
        await this.send(t, { to: this.otherUser(t.user), body: this.body(), cid: `c${this.nextCid++}` });
      } else if (r < 0.7) {
        const want = this.model.chats(t.user, 50);
        this.expect(t, {
          desc: `${show(want)} or unavailable`,
          test: (f) => isDeepStrictEqual(normalize(f), want) || isDeepStrictEqual(normalize(f), { op: 'error', code: 'unavailable', for: 'chats' }),
        });
        t.request({ op: 'chats' });
        await this.settle();
      } else {
        const op = r < 0.85 ? 'history' : 'read';
        this.expect(t, exact({ op: 'error', code: 'unavailable', for: op }));
        t.request(op === 'history' ? { op, with: this.otherUser(t.user) } : { op, with: this.otherUser(t.user), id: '1' });
        await this.settle();
      }
    }
    await pg.start();
    // Back when the spool has been written and the reader answers again.
    const mine = this.model.messages.filter((m) => this.users.includes(m.from)).length;
    const like = this.users.map((u) => `'${u}@${DOMAIN}'`).join(',');
    await until(`seed ${this.seed}: spool written`, 30000, async () =>
      Number(await pg.psql(`SELECT count(*) FROM messages WHERE sender IN (${like})`)) === mine, () => gw.logText());
    await until(`seed ${this.seed}: history readable`, 30000, async () => {
      const m = /imgw_store_up (\d)/.exec(await (await fetch(`${gw.httpUrl}/metrics`)).text());
      return m && m[1] === '1';
    });
    // A history page proves the reader is back (its errors are expected until then).
    const t = this.tabs[0];
    await until(`seed ${this.seed}: reader back`, 30000, async () => {
      const want = this.model.history(t.user, this.otherUser(t.user), null, 1);
      let ok = false;
      const e = { desc: 'history or unavailable', test: (f) => { ok = isDeepStrictEqual(normalize(f), want); return ok || (f.op === 'error' && f.for === 'history'); } };
      this.expect(t, e);
      t.request({ op: 'history', with: want.with.split('@')[0], limit: 1 });
      await this.settle([t]);
      return ok;
    });
  }
}

