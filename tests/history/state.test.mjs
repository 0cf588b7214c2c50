// Chat state that is always right (issue 11, items 2-4): unread counts with the Redis
// cache, `read` backwards and with foreign ids, and flow-controlled recovery and acks.
// Real PostgreSQL, Redis, Prosody (component mode) and the gateway; WebSocket clients.
import { after, before, describe, it } from '../lib/test.mjs';
import { sleep, until } from '../lib/bounded.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const J = (u) => `${u}@${GW}`;

describe('chat state', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, redis, gw, spool;
  const tabs = [];

  const tab = async (user, extra) => {
    const t = await openWs(gw.wsUrl);
    tabs.push(t);
    const w = await t.hello(user, extra);
    assert.equal(w.op, 'welcome', JSON.stringify(w));
    return t;
  };
  const send = async (t, to, body, cid) => {
    t.send({ op: 'send', to, body, cid });
    const a = await t.next((f) => (f.op === 'ack' || f.op === 'error') && f.cid === cid, 10000);
    assert.equal(a.op, 'ack', JSON.stringify(a));
    return a;
  };
  const chats = async (t) => {
    t.send({ op: 'chats' });
    return t.next((f) => f.op === 'chats' || (f.op === 'error' && f.for === 'chats'));
  };
  const unreadOf = (c, peer) => c.chats.find((x) => x.peer === J(peer))?.unread;
  const read = async (t, w, id) => {
    t.send({ op: 'read', with: w, id });
    return t.next((f) => f.op === 'read' || (f.op === 'error' && f.for === 'read'));
  };
  const cached = async (user) => (await redis.cli('EXISTS', `imgw:valid:${J(user)}`)).trim() === '1';

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    // A small session queue makes an unbounded replay overflow it every time. The spool
    // keeps sends durable while PostgreSQL restarts (some tests restart it).
    spool = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-state-spool-'));
    gw = await startImgw({
      prosody,
      config: {
        pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port,
        session_queue_max: 128, spool_dir: spool,
      },
    });
  });

  after(async () => {
    await Promise.all(tabs.map((t) => t.close().catch(() => {})));
    await gw?.cleanup();
    await prosody?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
    if (spool) fs.rmSync(spool, { recursive: true, force: true });
  });

  it('item 2: unread stays exact after chats (cache filled), then a partial read', async () => {
    const a = await tab('ann');
    const b = await tab('bea');
    const ids = [];
    for (let i = 1; i <= 4; i++) ids.push((await send(b, 'ann', `m${i}`, `i2-${i}`)).id);
    const c0 = await chats(a);
    assert.equal(unreadOf(c0, 'bea'), 4);
    await until('list cached', 5000, () => cached('ann'));
    const r = await read(a, 'bea', ids[2]);
    assert.deepEqual([r.id, r.unread], [ids[2], 1]);
    const c1 = await chats(a);
    assert.equal(unreadOf(c1, 'bea'), 1, JSON.stringify(c1));
    assert.equal(c1.unread_total, 1);
    assert.ok(await cached('ann'), 'still answered from the cache');
    const a2 = await tab('ann');
    const c2 = await chats(a2);
    assert.equal(unreadOf(c2, 'bea'), 1);
    assert.equal(c2.unread_total, 1);
  });

  it('item 2: a reply clears the replier\'s unread in the cached list as in PostgreSQL', async () => {
    const a = await tab('cal');
    const b = await tab('dee');
    await send(b, 'cal', 'q1', 'r-1');
    await send(b, 'cal', 'q2', 'r-2');
    assert.equal(unreadOf(await chats(a), 'dee'), 2);
    await until('list cached', 5000, () => cached('cal'));
    await send(a, 'dee', 'answer', 'r-3');
    const db = Number(await pg.psql(`SELECT unread FROM conversation_state WHERE user_jid = '${J('cal')}' AND peer_jid = '${J('dee')}'`));
    assert.equal(db, 0);
    assert.equal(unreadOf(await chats(a), 'dee'), 0);
  });

  it('item 3: read backwards keeps the marker and says so; unknown and foreign ids clamp', async () => {
    const a = await tab('eve');
    const a2 = await tab('eve');
    const b = await tab('fay');
    const c = await tab('gus');
    const ids = [];
    for (let i = 1; i <= 4; i++) ids.push((await send(b, 'eve', `n${i}`, `i3-${i}`)).id);
    let r = await read(a, 'fay', ids[2]);
    assert.deepEqual([r.id, r.unread], [ids[2], 1]);
    assert.deepEqual(await a2.next((f) => f.op === 'read'), r, 'a move reaches every tab');
    // Backwards: the answer is the marker that stays, to the asking tab only.
    r = await read(a, 'fay', ids[0]);
    assert.deepEqual([r.with, r.id, r.unread], [J('fay'), ids[2], 1]);
    assert.ok(await a2.none((f) => f.op === 'read', 300), 'nothing moved: the other tab hears nothing');
    assert.equal(unreadOf(await chats(a), 'fay'), 1);
    // An id older than every message of the conversation (unknown): the marker stays.
    r = await read(a, 'fay', '1');
    assert.deepEqual([r.id, r.unread], [ids[2], 1]);
    // An id from another conversation, newer than fay's last message: read up to that
    // point in time, clamped to the newest message of this conversation before it.
    const foreign = (await send(c, 'eve', 'other conversation', 'i3-f')).id;
    r = await read(a, 'fay', foreign);
    assert.deepEqual([r.id, r.unread], [ids[3], 0]);
    assert.deepEqual(await a2.next((f) => f.op === 'read' && f.with === J('fay')), r);
    // The largest id there is: clamped to the newest message.
    r = await read(a, 'gus', '9223372036854775807');
    assert.deepEqual([r.with, r.id, r.unread], [J('gus'), foreign, 0]);
    // No conversation at all: marker 0, nothing unread.
    r = await read(a, 'nobody', ids[0]);
    assert.deepEqual([r.with, r.id, r.unread], [J('nobody'), '0', 0]);
    const list = await chats(a);
    assert.equal(unreadOf(list, 'fay'), 0);
    assert.equal(list.unread_total, 0);
  });

  it('item 4: 505 messages missed, live messages during the replay: all once, no 1008', async () => {
    const b = await tab('hal');
    const seen = (await send(b, 'ivy', 'before', 'i4-0')).id;
    const N = 505;
    for (let i = 1; i <= N; i += 50) {
      const n = Math.min(50, N + 1 - i);
      for (let k = 0; k < n; k++) b.send({ op: 'send', to: 'ivy', body: `missed ${i + k}`, cid: `i4-${i + k}` });
      for (let k = 0; k < n; k++) await b.next((f) => f.op === 'ack' && f.cid === `i4-${i + k}`, 10000);
    }
    const a = await openWs(gw.wsUrl);
    tabs.push(a);
    a.send({ op: 'hello', v: 1, user: 'ivy', last_id: seen });
    // Live messages while the replay runs.
    const LIVE = 60;
    for (let k = 0; k < LIVE; k++) b.send({ op: 'send', to: 'ivy', body: `live ${k}`, cid: `i4-l${k}` });
    const bodies = new Map();
    let recovered = null;
    let closed = null;
    a.closed.then((c) => { closed = c; });
    await until('every message once', 30000, () => {
      for (let f; (f = a.inbox.shift());) {
        if (f.op === 'msg') bodies.set(f.body, (bodies.get(f.body) ?? 0) + 1);
        if (f.op === 'recovered') recovered = f;
      }
      return closed || (recovered && bodies.size === N + LIVE);
    });
    assert.equal(closed, null, `closed after ${bodies.size} messages`);
    assert.deepEqual([recovered.count >= N, recovered.reset], [true, false]);
    for (const [body, n] of bodies) assert.equal(n, 1, `${body} delivered ${n} times`);
    assert.ok(await a.none((f) => f.op === 'msg', 500), 'nothing more');
    assert.equal(a.ws.readyState, 1, 'still open');
  });

  it('item 4: a recovery waits a few seconds for the database instead of telling every client to reload', async () => {
    const b = await tab('lea');
    const seen = (await send(b, 'max', 'seen', 'w0')).id;
    const missed = (await send(b, 'max', 'missed while away', 'w1')).id;
    await pg.stop();
    let a;
    try {
      a = await openWs(gw.wsUrl);
      tabs.push(a);
      const w = await a.hello('max', { last_id: seen });
      assert.equal(w.op, 'welcome');
      assert.ok(await a.none((f) => f.op === 'recovered', 1000), 'no answer while the database is down');
    } finally {
      await pg.start();
    }
    const m = await a.next((f) => f.op === 'msg', 20000);
    assert.deepEqual([m.id, m.recovered], [missed, true]);
    assert.deepEqual(await a.next((f) => f.op === 'recovered', 10000), { op: 'recovered', count: 1, reset: false, __binary: false });
  });

  it('sends are acknowledged after PostgreSQL restarts (a writer whose socket failed is not left busy)', async () => {
    // Found by the model test: libuv reports a socket error of an idle or busy writer as a
    // poll error with no events and stops watching it; store.c ignored that, the writer
    // stayed busy for ever and every later ack waited behind its batch.
    const a = await tab('pgr');
    let n = 0;
    for (let round = 0; round < 8; round++) {
      await send(a, 'pgs', `before ${round}`, `g${n++}`);
      await pg.stop();
      await pg.start();
      await sleep(1000);
      const first = n;
      for (let i = 0; i < 10; i++) a.send({ op: 'send', to: 'pgs', body: `after ${round}.${i}`, cid: `g${n++}` });
      for (let i = first; i < n; i++) {
        const f = await a.next((x) => x.cid === `g${i}`, 15000).catch(() => null);
        assert.equal(f?.op, 'ack', `round ${round}: send g${i} not acknowledged`);
      }
    }
  });

  it('item 4: 1,000 pipelined sends in one write get 1,000 acks', async () => {
    const a = await tab('jon');
    const N = 1000;
    const sock = a.ws._socket;
    sock.cork();
    for (let i = 0; i < N; i++) a.send({ op: 'send', to: 'kim', body: `p${i}`, cid: `p${i}` });
    sock.uncork();
    const acks = new Set();
    const other = [];
    let closed = null;
    a.closed.then((c) => { closed = c; });
    await until('1,000 acks', 60000, () => {
      for (let f; (f = a.inbox.shift());) {
        if (f.op === 'ack') acks.add(f.cid);
        else other.push(f);
      }
      return closed || acks.size === N;
    }, () => gw.logText()).catch((err) => { throw new Error(`${acks.size} acks, then ${JSON.stringify(other.slice(0, 3))}: ${err.message}`); });
    assert.equal(closed, null, `closed after ${acks.size} acks`);
    assert.deepEqual(other, []);
  });
});
