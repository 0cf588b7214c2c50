// History end to end: real PostgreSQL (schema migrated by the gateway), real Prosody,
// the gateway with pg_conninfo and a spool, WebSocket clients and an XMPP app user.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { until } from '../lib/bounded.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const J = (u) => `${u}@${GW}`;
const NASTY = `it's "quoted" \\back\\slash 😀 tab\tnl\ncr\r ; DROP TABLE messages; -- $$ $1 %s <b>&amp;`;

describe('history', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, gw, app, spool;
  const count = async (where = 'true') => Number(await pg.psql(`SELECT count(*) FROM messages WHERE ${where}`));

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], users: [['app1', 'pw']], logLevel: 'info' });
    spool = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-spool-'));
    gw = await startImgw({ prosody, config: { pg_conninfo: `"${pg.connString}"`, spool_dir: spool } });
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw' });
  });

  after(async () => {
    await stopAll(app);
    await gw?.cleanup();
    await prosody?.cleanup();
    await pg?.cleanup();
    if (spool) fs.rmSync(spool, { recursive: true, force: true });
  });

  it('applies the schema at start-up, and `imgw migrate` finds it up to date', async () => {
    const applied = Number(await pg.psql('SELECT count(*) FROM schema_migrations'));
    assert.ok(applied >= 2);
    const { execFile } = await import('node:child_process');
    const { GATEWAY_BIN } = await import('../lib/imgw.mjs');
    const r = await new Promise((resolve) => execFile(GATEWAY_BIN, ['--config', gw.confPath, 'migrate'],
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /schema up to date/);
    assert.equal(Number(await pg.psql('SELECT count(*) FROM schema_migrations')), applied);
  });

  it('stores each message once, verbatim, and acks only when durable', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('hal');
    await b.hello('ida');
    a.send({ op: 'send', to: 'ida', body: NASTY, cid: 'n1' });
    const ack = await a.next((f) => f.op === 'ack');
    // Durable at ack time: the row is there already.
    // Compared as bytes (hex), so psql's display of control characters does not matter.
    const hex = (await pg.psql(`SELECT encode(convert_to(body, 'UTF8'), 'hex') FROM messages WHERE id = ${ack.id}`)).trim();
    assert.equal(hex, Buffer.from(NASTY, 'utf8').toString('hex'));
    const m = await b.next((f) => f.op === 'msg');
    // Delivered through the XMPP server: XML end-of-line handling turns a bare CR into LF.
    assert.equal(m.body, NASTY.replace(/\r/g, '\n'));
    assert.equal(m.id, ack.id);
    // The server's copy came back down the component stream: still one row.
    await until('copy processed', 5000, async () => (await gw.health()).link === 'up');
    assert.equal(await count(`body = '${NASTY.replace(/'/g, "''")}'`), 1);

    // A retried send (same cid) is acknowledged with the same id and not stored or sent twice.
    a.send({ op: 'send', to: 'ida', body: NASTY, cid: 'n1' });
    const again = await a.next((f) => f.op === 'ack');
    assert.equal(again.id, ack.id);
    assert.ok(await b.none((f) => f.op === 'msg', 400));
    assert.equal(await count(`client_id = 'n1'`), 1);
    await a.close();
    await b.close();
  });

  it('pages history newest first by "before", scoped to the asking user', async () => {
    const a = await openWs(gw.wsUrl);
    const c = await openWs(gw.wsUrl);
    await a.hello('jay');
    await c.hello('kai');
    for (let i = 1; i <= 7; i++) {
      a.send({ op: 'send', to: 'kai', body: `page ${i}`, cid: `p${i}` });
      await a.next((f) => f.op === 'ack' && f.cid === `p${i}`);
    }
    a.send({ op: 'history', with: 'kai', limit: 5 });
    const h1 = await a.next((f) => f.op === 'history');
    assert.deepEqual(h1.msgs.map((m) => m.body), ['page 3', 'page 4', 'page 5', 'page 6', 'page 7']);
    assert.equal(h1.more, true);
    assert.equal(h1.with, J('kai'));
    a.send({ op: 'history', with: 'kai', limit: 5, before: h1.msgs[0].id });
    const h2 = await a.next((f) => f.op === 'history');
    assert.deepEqual(h2.msgs.map((m) => m.body), ['page 1', 'page 2']);
    assert.equal(h2.more, false);
    // Someone else asking about kai sees only their own conversation with kai (none).
    const x = await openWs(gw.wsUrl);
    await x.hello('lou');
    x.send({ op: 'history', with: 'kai' });
    assert.deepEqual((await x.next((f) => f.op === 'history')).msgs, []);
    x.send({ op: 'history', with: 'jay' });
    assert.deepEqual((await x.next((f) => f.op === 'history')).msgs, []);
    await Promise.all([a.close(), c.close(), x.close()]);
  });

  it('keeps chat-list order and unread counts, and mark-read clears every tab', async () => {
    const t1 = await openWs(gw.wsUrl);
    const t2 = await openWs(gw.wsUrl);
    const p1 = await openWs(gw.wsUrl);
    const p2 = await openWs(gw.wsUrl);
    await t1.hello('mo');
    await t2.hello('mo');
    await p1.hello('ned');
    await p2.hello('ola');
    const send = async (t, to, body, cid) => { t.send({ op: 'send', to, body, cid }); await t.next((f) => f.op === 'ack' && f.cid === cid); };
    await send(p1, 'mo', 'from ned 1', 'u1');
    await send(p1, 'mo', 'from ned 2', 'u2');
    await send(p2, 'mo', 'from ola', 'u3');
    await app.send(xml('message', { to: J('mo'), type: 'chat', id: 'app-u4' }, xml('body', {}, 'from app')));
    await until('app message stored', 5000, async () => (await count(`sender = 'app1@${DOMAIN}' AND recipient = '${J('mo')}'`)) === 1);
    t1.send({ op: 'chats' });
    const chats = await t1.next((f) => f.op === 'chats');
    assert.deepEqual(chats.chats.map((c) => [c.peer, c.unread]), [[`app1@${DOMAIN}`, 1], [J('ola'), 1], [J('ned'), 2]]);
    assert.equal(chats.unread_total, 4);
    assert.equal(chats.chats[2].preview, 'from ned 2');

    t1.send({ op: 'read', with: 'ned', id: chats.chats[2].last_id });
    for (const t of [t1, t2]) {
      const r = await t.next((f) => f.op === 'read');
      assert.equal(r.with, J('ned'));
      assert.equal(r.unread, 0);
    }
    t2.send({ op: 'chats' });
    const after = await t2.next((f) => f.op === 'chats');
    assert.equal(after.chats.find((c) => c.peer === J('ned')).unread, 0);
    assert.equal(after.unread_total, 2);
    await Promise.all([t1.close(), t2.close(), p1.close(), p2.close()]);
  });

  it('recovers what a dropped session missed, in order, without duplicates', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('pia');
    await b.hello('quin');
    b.send({ op: 'send', to: 'pia', body: 'seen', cid: 'r0' });
    const seen = await a.next((f) => f.op === 'msg');
    await a.close();
    for (let i = 1; i <= 5; i++) {
      b.send({ op: 'send', to: 'pia', body: `missed ${i}`, cid: `r${i}` });
      await b.next((f) => f.op === 'ack' && f.cid === `r${i}`);
    }
    const a2 = await openWs(gw.wsUrl);
    const w = await a2.hello('pia', { last_id: seen.id });
    assert.equal(w.op, 'welcome');
    const got = [];
    for (;;) {
      const f = await a2.next((x) => x.op === 'msg' || x.op === 'recovered');
      if (f.op === 'recovered') {
        assert.equal(f.count, 5);
        assert.equal(f.reset, false);
        break;
      }
      assert.equal(f.recovered, true);
      got.push(f.body);
    }
    assert.deepEqual(got, ['missed 1', 'missed 2', 'missed 3', 'missed 4', 'missed 5']);
    await Promise.all([a2.close(), b.close()]);
  });

  it('spools while PostgreSQL is down and writes everything when it is back', async () => {
    const a = await openWs(gw.wsUrl);
    const b = await openWs(gw.wsUrl);
    await a.hello('rex');
    await b.hello('sam');
    const before = await count(`sender = '${J('rex')}'`);
    await pg.stop();
    const N = 30;
    for (let i = 0; i < N; i++) a.send({ op: 'send', to: 'sam', body: `during outage ${i}`, cid: `o${i}` });
    for (let i = 0; i < N; i++) {
      const f = await a.next((x) => (x.op === 'ack' || x.op === 'error') && x.cid === `o${i}`, 10000);
      assert.equal(f.op, 'ack', `send ${i} acknowledged (durable in the spool)`);
    }
    // Delivery does not wait for the database.
    for (let i = 0; i < N; i++) assert.equal((await b.next((f) => f.op === 'msg', 10000)).body, `during outage ${i}`);
    // History reads fail cleanly meanwhile.
    a.send({ op: 'history', with: 'sam' });
    assert.equal((await a.next((f) => f.op === 'error' && f.for === 'history', 10000)).code, 'unavailable');
    await pg.start();
    await until('spool replayed', 30000, async () => (await count(`sender = '${J('rex')}'`)) === before + N);
    assert.equal(await count(`sender = '${J('rex')}' AND body LIKE 'during outage %'`), N);
    // Pages again once the reader is back: its page statement is prepared per connection,
    // so the new connection must have prepared it again.
    let page;
    await until('history answers again', 30000, async () => {
      a.send({ op: 'history', with: 'sam', limit: 100 });
      page = await a.next((f) => f.op === 'history' || (f.op === 'error' && f.for === 'history'), 10000);
      return page.op === 'history';
    });
    assert.equal(page.msgs.filter((m) => m.body.startsWith('during outage ')).length, N);
    await Promise.all([a.close(), b.close()]);
  });

  it('keeps history across a gateway restart', async () => {
    await gw.stop();
    await gw.start();
    // gw.start() does not wait for the store (restarts may happen while PostgreSQL is down);
    // until the reader has connected a page is refused 'unavailable' ("retry later"), and a
    // client retries, as this does (bounded).
    const a = await openWs(gw.wsUrl);
    await a.hello('jay');
    let page;
    await until('a history page after the restart', 20000, async () => {
      a.send({ op: 'history', with: 'kai', limit: 100 });
      const f = await a.next((x) => x.op === 'history' || (x.op === 'error' && x.for === 'history'));
      if (f.op === 'error') {
        assert.equal(f.code, 'unavailable', JSON.stringify(f));
        return false;
      }
      page = f;
      return true;
    }, gw.logText);
    assert.equal(page.msgs.length, 7);
    await a.close();
  });
});

describe('history with the Redis cache', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, redis, gw;

  before(async () => {
    const { startRedis } = await import('../lib/redis.mjs');
    pg = await startPostgres({ db: 'imgw' });
    redis = await startRedis();
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'info' });
    gw = await startImgw({ prosody, config: { pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port } });
  });

  after(async () => {
    await gw?.cleanup();
    await prosody?.cleanup();
    await redis?.cleanup();
    await pg?.cleanup();
  });

  const chats = async (t) => { t.send({ op: 'chats' }); const f = await t.next((x) => x.op === 'chats'); return f.chats.map((c) => [c.peer, c.unread, c.preview]); };

  it('answers the same chat list from Redis, after FLUSHALL, and with Redis down', async () => {
    const me = await openWs(gw.wsUrl);
    const p1 = await openWs(gw.wsUrl);
    const p2 = await openWs(gw.wsUrl);
    await me.hello('tom');
    await p1.hello('uma');
    await p2.hello('vic');
    const send = async (t, to, body, cid) => { t.send({ op: 'send', to, body, cid }); await t.next((f) => f.op === 'ack' && f.cid === cid); };
    await send(p1, 'tom', 'hello from uma', 'c1');
    await send(p2, 'tom', 'hello from vic', 'c2');
    const want = [[J('vic'), 1, 'hello from vic'], [J('uma'), 1, 'hello from uma']];
    assert.deepEqual(await chats(me), want); // miss: PostgreSQL, then refilled
    await until('cache filled', 5000, async () => (await redis.cli('EXISTS', `imgw:valid:${J('tom')}`)).trim() === '1');
    assert.deepEqual(await chats(me), want); // hit
    // A new message updates the cached list in place.
    await send(p1, 'tom', 'again from uma', 'c3');
    const want2 = [[J('uma'), 2, 'again from uma'], [J('vic'), 1, 'hello from vic']];
    await until('cache updated', 5000, async () => JSON.stringify(await chats(me)) === JSON.stringify(want2));
    await redis.cli('FLUSHALL');
    assert.deepEqual(await chats(me), want2);
    await redis.stop();
    assert.deepEqual(await chats(me), want2, 'served from PostgreSQL while Redis is down');
    await redis.start();
    await Promise.all([me.close(), p1.close(), p2.close()]);
  });
});
