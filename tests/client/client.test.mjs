// Unit tests of the browser client's own logic: backoff, the outbox across reconnects,
// unread counting, authentication failure. A scripted in-process transport stands in for
// the network; tests against the real gateway are in client_gateway.test.mjs.
//
//   node --test tests/client/client.test.mjs

import test from '../lib/test.mjs';
import assert from 'node:assert/strict';

import {
  ImgwClient, apiUrlFor, backoffDelay, backoffCeiling, bareJid, compareIds, jsonpTransport, webSocketTransport,
} from '../../clients/web/imgw.js';

const tick = () => new Promise((r) => setTimeout(r, 0));

/** Waits until `cond()` holds, polling; fails after `ms`. */
async function until(cond, ms = 2000, what = 'condition') {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * A transport factory whose connections the test drives by hand. Each connection records
 * the frames the client wrote and lets the test open it, deliver frames, or drop it.
 */
function scriptedTransport() {
  const conns = [];
  const factory = (url, h) => {
    const conn = {
      url,
      sent: [],
      closed: false,
      frames: () => conn.sent.map((t) => JSON.parse(t)),
      open: () => h.onOpen(),
      deliver: (obj) => h.onMessage(JSON.stringify(obj)),
      drop: (code = 1006, reason = '') => {
        if (conn.closed) return;
        conn.closed = true;
        h.onClose(code, reason);
      },
      send: (text) => {
        if (!conn.closed) conn.sent.push(text);
      },
      close: (code, reason) => {
        // Like a browser: the close event arrives later, not during close().
        setTimeout(() => conn.drop(code ?? 1000, reason ?? ''), 0);
      },
    };
    conns.push(conn);
    return conn;
  };
  return { factory, conns };
}

/** A client on a scripted transport, with tiny backoff so reconnects are quick. */
function makeClient(extra = {}) {
  const t = scriptedTransport();
  const client = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', transport: t.factory,
    backoff: { minMs: 1, maxMs: 4 }, pingIntervalMs: 0, ...extra,
  });
  return { client, conns: t.conns };
}

/** Opens the newest connection and answers its hello with a welcome. */
async function welcome(conns, user = 'alice') {
  await until(() => conns.length > 0 && !conns.at(-1).closed && conns.at(-1).sent.length === 0, 2000, 'a connection');
  const c = conns.at(-1);
  c.open();
  const hello = c.frames()[0];
  assert.equal(hello.op, 'hello');
  c.deliver({ op: 'welcome', v: 1, user, jid: `${user}@gw.shop.test`, session: 's' + conns.length });
  return { c, hello };
}

function collect(client, name) {
  const out = [];
  client.on(name, (x) => out.push(x));
  return out;
}

// ---- backoff ----

test('backoff ceiling doubles from minMs and is capped at maxMs', () => {
  const o = { minMs: 250, maxMs: 30000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((a) => backoffCeiling(a, o)),
    [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  assert.equal(backoffCeiling(1e6, o), 30000, 'no overflow on a long outage');
  assert.equal(backoffCeiling(1), 250, 'defaults');
  assert.equal(backoffCeiling(100), 30000, 'defaults');
});

test('backoff delay is bounded by [0, ceiling) and spread by jitter', () => {
  const o = { minMs: 250, maxMs: 30000 };
  for (let a = 1; a <= 20; a++) {
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(a, o);
      assert.ok(Number.isInteger(d) && d >= 0 && d < backoffCeiling(a, o), `attempt ${a}: ${d}`);
      assert.ok(d <= 30000);
    }
  }
  // Full jitter: the extremes of the random source map to the ends of the range.
  assert.equal(backoffDelay(3, o, () => 0), 0);
  assert.equal(backoffDelay(3, o, () => 0.999999), 999);
  assert.equal(backoffDelay(50, o, () => 0.999999), 29999);
  // Many draws for one attempt are not all the same (jitter), and they cover the range.
  const draws = Array.from({ length: 500 }, () => backoffDelay(8, o));
  assert.ok(new Set(draws).size > 100, 'jittered');
  assert.ok(Math.min(...draws) < 3000 && Math.max(...draws) > 27000, 'covers the range');
});

test('backoff grows on average with each attempt until the cap', () => {
  const o = { minMs: 100, maxMs: 10000 };
  const mean = (a) => {
    let s = 0;
    for (let i = 0; i < 2000; i++) s += backoffDelay(a, o);
    return s / 2000;
  };
  const means = [1, 2, 3, 4, 5, 6, 7, 8, 9].map(mean);
  for (let i = 1; i < 7; i++) assert.ok(means[i] > means[i - 1] * 1.5, `mean grows: ${means}`);
  // Past the cap the mean stays at about maxMs / 2.
  assert.ok(Math.abs(means[8] - 5000) < 500, `capped mean ${means[8]}`);
});

test('the client reconnects with growing backoff and reports each attempt', async () => {
  const { client, conns } = makeClient({ backoff: { minMs: 8, maxMs: 64 }, random: () => 0.999 });
  const rec = collect(client, 'reconnecting');
  client.connect().catch(() => {});
  for (let i = 0; i < 6; i++) {
    await until(() => conns.length === i + 1, 2000, `attempt ${i + 1}`);
    conns[i].drop(1006);
  }
  await until(() => rec.length === 6);
  assert.deepEqual(rec.map((r) => r.attempt), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(rec.map((r) => r.delayMs), [7, 15, 31, 63, 63, 63]);
  // A welcome resets the backoff.
  await welcome(conns);
  conns.at(-1).drop(1006);
  await until(() => rec.length === 7);
  assert.deepEqual(rec[6], { attempt: 1, delayMs: 7 });
  client.close();
});

// ---- hello ----

test('hello carries the dev-mode user or the ticket, and last_id once known', async () => {
  const { client, conns } = makeClient();
  client.connect();
  const { c, hello } = await welcome(conns);
  assert.deepEqual(hello, { op: 'hello', v: 1, user: 'alice' });
  c.deliver({ op: 'msg', id: '9007199254740993', conv: 'bob@gw.shop.test', from: 'bob@gw.shop.test', to: 'alice@gw.shop.test', body: 'a', kind: 'text', ts: 1 });
  c.deliver({ op: 'msg', id: '12', conv: 'bob@gw.shop.test', from: 'bob@gw.shop.test', to: 'alice@gw.shop.test', body: 'b', kind: 'text', ts: 2 });
  assert.equal(client.lastId, '9007199254740993', 'compared as decimal strings, not numbers');
  c.drop(1006);
  const second = await welcome(conns);
  assert.deepEqual(second.hello, { op: 'hello', v: 1, user: 'alice', last_id: '9007199254740993' });
  client.close();

  let calls = 0;
  const t = scriptedTransport();
  const c2 = new ImgwClient({
    url: 'ws://x/ws', transport: t.factory, pingIntervalMs: 0, backoff: { minMs: 1, maxMs: 2 },
    ticket: async () => `alice:${++calls}:mac`,
  });
  c2.connect();
  const w1 = await welcome(t.conns);
  assert.deepEqual(w1.hello, { op: 'hello', v: 1, ticket: 'alice:1:mac' });
  w1.c.drop(1006);
  const w2 = await welcome(t.conns);
  assert.equal(w2.hello.ticket, 'alice:2:mac', 'ticket function is asked again on reconnect');
  c2.close();
});

test('compareIds orders decimal strings of any length', () => {
  assert.equal(compareIds('9', '10'), -1);
  assert.equal(compareIds('18446744073709551615', '18446744073709551614'), 1);
  assert.equal(compareIds('42', '42'), 0);
});

test('bareJid expands user ids and ignores case and resource', () => {
  assert.equal(bareJid('Bob', 'gw.shop.test'), 'bob@gw.shop.test');
  assert.equal(bareJid('Bob@Shop.Test/phone', 'gw.shop.test'), 'bob@shop.test');
});

// ---- outbox ----

test('unacknowledged sends are re-sent with the same cid after a reconnect', async () => {
  const { client, conns } = makeClient();
  client.connect();
  const { c: first } = await welcome(conns);
  const p1 = client.send('bob', 'one');
  const p2 = client.send('bob@gw.shop.test', 'two');
  const sent1 = first.frames().filter((f) => f.op === 'send');
  assert.equal(sent1.length, 2);
  assert.notEqual(sent1[0].cid, sent1[1].cid);
  assert.ok(sent1.every((f) => typeof f.cid === 'string' && f.cid.length >= 1 && f.cid.length <= 64));
  // Only the first is acknowledged before the connection drops.
  first.deliver({ op: 'ack', cid: sent1[0].cid, id: '100', ts: 1000, queued: false });
  const a1 = await p1;
  assert.equal(a1.id, '100');
  assert.equal(a1.message.conv, 'bob@gw.shop.test');
  assert.equal(a1.message.own, true);
  first.drop(1006);
  // While disconnected a third send only waits in the outbox.
  const p3 = client.send('bob', 'three');
  assert.deepEqual(client.outbox.map((e) => e.body), ['two', 'three']);

  const { c: second } = await welcome(conns);
  const sent2 = second.frames().filter((f) => f.op === 'send');
  assert.deepEqual(sent2.map((f) => f.body), ['two', 'three'], 'in original order, acked one not repeated');
  assert.equal(sent2[0].cid, sent1[1].cid, 'same cid as the first attempt');
  // Dropped again before any ack: the third connection repeats exactly the same frames.
  second.drop(1006);
  const { c: third } = await welcome(conns);
  const sent3 = third.frames().filter((f) => f.op === 'send');
  assert.deepEqual(sent3, sent2);
  for (const [i, f] of sent3.entries()) third.deliver({ op: 'ack', cid: f.cid, id: String(101 + i), ts: 1001 + i });
  assert.deepEqual((await Promise.all([p2, p3])).map((a) => a.id), ['101', '102']);
  assert.equal(client.outbox.length, 0);
  // A late duplicate ack is ignored.
  third.deliver({ op: 'ack', cid: sent3[0].cid, id: '101', ts: 1 });
  client.close();
});

test('a send is rejected by an error frame carrying its cid, and can be retried with that cid', async () => {
  const { client, conns } = makeClient();
  const errors = collect(client, 'error');
  client.connect();
  const { c } = await welcome(conns);
  const p = client.send('not a user!', 'x');
  const f = c.frames().at(-1);
  c.deliver({ op: 'error', code: 'bad_recipient', reason: 'bad to', cid: f.cid });
  await assert.rejects(p, (e) => e.code === 'bad_recipient' && e.cid === f.cid);
  assert.equal(client.outbox.length, 0);
  assert.equal(errors.at(-1).code, 'bad_recipient');
  // An error without a cid does not touch the outbox.
  const q = client.send('bob', 'y', { cid: 'fixed-cid-1' });
  c.deliver({ op: 'error', code: 'bad_json', reason: 'x' });
  assert.equal(client.outbox.length, 1);
  assert.equal(c.frames().at(-1).cid, 'fixed-cid-1');
  c.deliver({ op: 'ack', cid: 'fixed-cid-1', id: '5', ts: 5 });
  assert.equal((await q).cid, 'fixed-cid-1');
  client.close();
});

test('sendTimeoutMs rejects a send nobody acknowledges; close() rejects the rest', async () => {
  const { client, conns } = makeClient({ sendTimeoutMs: 20 });
  client.connect();
  await welcome(conns);
  await assert.rejects(client.send('bob', 'lost'), (e) => e.code === 'timeout');
  assert.equal(client.outbox.length, 0);
  const { client: c2, conns: k2 } = makeClient();
  c2.connect();
  await welcome(k2);
  const p = c2.send('bob', 'pending');
  c2.close();
  await assert.rejects(p, (e) => e.code === 'closed');
  await assert.rejects(c2.send('bob', 'after'), (e) => e.code === 'closed');
  client.close();
});

// ---- close codes ----

test('4401 stops reconnecting and emits authfailed with the error frame', async () => {
  const { client, conns } = makeClient();
  const auth = collect(client, 'authfailed');
  const rec = collect(client, 'reconnecting');
  const states = collect(client, 'state');
  const connecting = client.connect();
  const pending = client.send('bob', 'never');
  await until(() => conns.length === 1);
  conns[0].open();
  conns[0].deliver({ op: 'error', code: 'bad_hello', reason: 'dev mode is off' });
  conns[0].drop(4401, 'auth');
  await assert.rejects(connecting, (e) => e.code === 'bad_hello');
  await assert.rejects(pending, (e) => e.code === 'auth_failed');
  assert.equal(auth.length, 1);
  assert.equal(auth[0].error.code, 'bad_hello');
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(conns.length, 1, 'no reconnect after 4401');
  assert.equal(rec.length, 0);
  assert.equal(client.state, 'closed');
  assert.deepEqual(states.map((s) => s.state), ['connecting', 'closed']);
});

test('an authentication error frame stops reconnecting even if the close code is not 4401', async () => {
  const { client, conns } = makeClient();
  const auth = collect(client, 'authfailed');
  const connecting = client.connect();
  await until(() => conns.length === 1);
  conns[0].open();
  conns[0].deliver({ op: 'error', code: 'bad_ticket', reason: 'bad MAC' });
  conns[0].drop(1006);
  await assert.rejects(connecting, (e) => e.code === 'bad_ticket');
  assert.deepEqual(auth, [{ code: 1006, reason: '', error: { code: 'bad_ticket', reason: 'bad MAC' } }]);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(conns.length, 1);

  // Other errors before the welcome (too_many_sessions closes with 4429) are retried.
  const k = makeClient();
  k.client.connect().catch(() => {});
  await until(() => k.conns.length === 1);
  k.conns[0].open();
  k.conns[0].deliver({ op: 'error', code: 'too_many_sessions', reason: 'x' });
  k.conns[0].drop(4429);
  await until(() => k.conns.length === 2, 2000, 'a retry');
  k.client.close();
});

test('close() stops reconnecting, also while a retry is pending', async () => {
  const { client, conns } = makeClient({ backoff: { minMs: 20, maxMs: 20 }, random: () => 0.99 });
  const closes = collect(client, 'close');
  client.connect().catch(() => {});
  await welcome(conns);
  conns[0].drop(1001, 'going away');
  assert.equal(client.state, 'reconnecting');
  client.close();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(conns.length, 1);
  assert.equal(client.state, 'closed');
  assert.deepEqual(closes.map((c) => c.reconnect), [true, false]);
  // connect() after close() starts over.
  const p = client.connect();
  await welcome(conns);
  assert.equal((await p).op, 'welcome');
  client.close();
  await tick();
  assert.equal(conns.at(-1).closed, true, 'transport closed');
});

test('a silent connection is abandoned after a ping goes unanswered', async () => {
  const { client, conns } = makeClient({ pingIntervalMs: 10, pongTimeoutMs: 10 });
  client.connect();
  const { c } = await welcome(conns);
  await until(() => c.frames().some((f) => f.op === 'ping'), 500, 'a ping');
  await until(() => conns.length === 2, 500, 'a reconnect after the pong timeout');
  client.close();

  // Answered pings keep the connection: no reconnect. The generous pong timeout keeps a
  // busy machine from failing this.
  const k = makeClient({ pingIntervalMs: 10, pongTimeoutMs: 300 });
  k.client.connect();
  const { c: live } = await welcome(k.conns);
  let answered = 0;
  const stop = setInterval(() => {
    const pings = live.frames().filter((f) => f.op === 'ping');
    for (; answered < pings.length; answered++) live.deliver({ op: 'pong', t: pings[answered].t });
  }, 2);
  await until(() => answered >= 4, 3000, 'four pings answered');
  clearInterval(stop);
  assert.equal(k.conns.length, 1);
  k.client.close();
});

// ---- unread counts and chats ----

test('unread counts: other conversations count up, open() clears, own messages never count', async () => {
  const { client, conns } = makeClient();
  const unread = collect(client, 'unread');
  let chats = [];
  client.on('chats', (l) => { chats = l; });
  client.connect();
  const { c } = await welcome(conns);
  let id = 0;
  const msg = (from, to, conv, extra = {}) => c.deliver({
    op: 'msg', id: String(++id), conv, from, to, body: `m${id}`, kind: 'text', ts: 1000 + id, ...extra,
  });
  const me = 'alice@gw.shop.test';
  const bob = 'bob@gw.shop.test';
  const carol = 'carol@gw.shop.test';

  client.open('bob');
  assert.deepEqual(c.frames().at(-1), { op: 'open', with: bob });
  msg(bob, me, bob); // open conversation: not unread
  msg(carol, me, carol);
  msg(carol, me, 'Carol@GW.shop.test'); // case does not split the conversation
  msg(me, carol, carol, { cid: 'from-other-tab' }); // own send from another tab
  assert.equal(client.unreadCount('carol'), 2);
  assert.equal(client.unreadCount('bob'), 0);
  assert.deepEqual(unread, [
    { conv: carol, count: 1, total: 1 },
    { conv: carol, count: 2, total: 2 },
  ]);
  assert.deepEqual(chats.map((x) => [x.conv, x.unread, x.last.body]), [[carol, 2, 'm4'], [bob, 0, 'm1']]);
  assert.equal(chats[0].last.own, true);

  // A duplicate delivery (same id, e.g. after recovery) is not counted twice.
  c.deliver({ op: 'msg', id: '2', conv: carol, from: carol, to: me, body: 'm2', kind: 'text', ts: 1002 });
  assert.equal(client.unreadCount(carol), 2);

  client.open(carol);
  assert.deepEqual(unread.at(-1), { conv: carol, count: 0, total: 0 });
  msg(bob, me, bob);
  assert.deepEqual(unread.at(-1), { conv: bob, count: 1, total: 1 });
  assert.equal(chats[0].conv, bob, 'most recent first');

  client.open(null);
  assert.deepEqual(c.frames().at(-1), { op: 'open', with: null });
  msg(carol, me, carol);
  assert.equal(client.totalUnread, 2);

  // An acknowledged own send becomes the chat's last message and counts nothing.
  const p = client.send('dave', 'hi dave');
  c.deliver({ op: 'ack', cid: c.frames().at(-1).cid, id: '99', ts: 5000 });
  await p;
  assert.equal(chats[0].conv, 'dave@gw.shop.test');
  assert.equal(chats[0].unread, 0);
  assert.equal(chats[0].last.body, 'hi dave');

  // Opening a new conversation lists it even before any message.
  client.open('erin');
  assert.equal(client.chatList()[0].conv, 'erin@gw.shop.test');
  assert.equal(client.chatList()[0].last, null);

  // The open conversation is re-announced to the gateway after a reconnect.
  c.drop(1006);
  const { c: c2 } = await welcome(conns);
  assert.deepEqual(c2.frames().at(-1), { op: 'open', with: 'erin@gw.shop.test' });
  client.close();
});

// ---- transport ----

test('the WebSocket transport asks for the imgw.v1 subprotocol and maps events', async () => {
  const made = [];
  class FakeWS {
    constructor(url, proto) {
      this.url = url;
      this.proto = proto;
      this.readyState = 0;
      this.out = [];
      made.push(this);
    }
    send(t) { this.out.push(t); }
    close(code) { this.readyState = 3; setTimeout(() => this.onclose({ code, reason: '' }), 0); }
  }
  const events = [];
  const t = webSocketTransport(FakeWS)('ws://h/ws', {
    onOpen: () => events.push('open'),
    onMessage: (s) => events.push(s),
    onClose: (code) => events.push(code),
  });
  const ws = made[0];
  assert.equal(ws.proto, 'imgw.v1');
  t.send('dropped: not open yet');
  ws.readyState = 1;
  ws.onopen();
  ws.onmessage({ data: '{"op":"pong"}' });
  ws.onmessage({ data: new ArrayBuffer(2) });
  t.send('x');
  ws.onerror({});
  t.close(4000);
  await tick();
  ws.onclose({ code: 1006 }); // a second close event is not reported again
  assert.deepEqual(events, ['open', '{"op":"pong"}', 4000]);
  assert.deepEqual(ws.out, ['x']);
  webSocketTransport(FakeWS, null)('ws://h/ws', { onOpen() {}, onMessage() {}, onClose() {} });
  assert.equal(made[1].proto, undefined);
  assert.throws(() => new ImgwClient({ url: 'ws://h/ws', user: 'a', WebSocket: undefined, transports: ['websocket'] }), /WebSocket/);
});

// ---- history, chats, read ----

const ME = 'alice@gw.shop.test';
const BOB = 'bob@gw.shop.test';
const CAROL = 'carol@gw.shop.test';
const msgFrame = (id, from, to, conv, extra = {}) => ({
  op: 'msg', id: String(id), conv, from, to, body: `m${id}`, kind: 'text', ts: 1000 + Number(id), ...extra,
});

test('history() asks for a page, resolves with normalised messages and raises lastId', async () => {
  const { client, conns } = makeClient();
  client.connect();
  const { c } = await welcome(conns);
  const p = client.history('Bob', { before: '500', limit: 2 });
  assert.deepEqual(c.frames().at(-1), { op: 'history', with: BOB, before: '500', limit: 2 });
  c.deliver({
    op: 'history', with: BOB, more: true,
    msgs: [msgFrame(300, BOB, ME, BOB, { open: false }), msgFrame(400, ME, BOB, BOB, { open: false, cid: 'x' })],
  });
  const h = await p;
  assert.equal(h.with, BOB);
  assert.equal(h.more, true);
  assert.deepEqual(h.msgs.map((m) => [m.id, m.own, m.conv]), [['300', false, BOB], ['400', true, BOB]]);
  assert.equal(client.lastId, '400', 'history ids count as seen');
  // The newest page: no before.
  const q = client.history(BOB);
  assert.deepEqual(c.frames().at(-1), { op: 'history', with: BOB });
  c.deliver({ op: 'history', with: BOB, msgs: [], more: false });
  assert.deepEqual((await q).msgs, []);
  // An error frame for history rejects the oldest history query.
  const r = client.history('carol');
  c.deliver({ op: 'error', code: 'unavailable', reason: 'no history', for: 'history' });
  await assert.rejects(r, (e) => e.code === 'unavailable');
  client.close();
});

test('queries made while disconnected, or lost with a connection, are asked on the next one', async () => {
  const { client, conns } = makeClient();
  const early = client.history('bob', { limit: 5 }); // before connect(): no domain yet
  const chats = client.chats(10);
  client.connect();
  const { c } = await welcome(conns);
  const sent = c.frames().slice(1);
  assert.deepEqual(sent, [{ op: 'history', with: BOB, limit: 5 }, { op: 'chats', limit: 10 }]);
  c.drop(1006);
  const { c: c2 } = await welcome(conns);
  assert.deepEqual(c2.frames().slice(1), sent, 'unanswered queries asked again');
  c2.deliver({ op: 'history', with: BOB, msgs: [], more: false });
  c2.deliver({ op: 'chats', chats: [], unread_total: 0 });
  assert.equal((await early).with, BOB);
  assert.equal((await chats).unread_total, 0);
  // A query nobody answers times out; close() rejects the others.
  const k = makeClient({ requestTimeoutMs: 20 });
  k.client.connect();
  await welcome(k.conns);
  await assert.rejects(k.client.chats(), (e) => e.code === 'timeout');
  const pending = k.client.read('bob', '1');
  k.client.close();
  await assert.rejects(pending, (e) => e.code === 'closed');
  await assert.rejects(k.client.history('bob'), (e) => e.code === 'closed');
  client.close();
});

test('chats(): the server\'s unread counts replace the local ones; live messages count on top', async () => {
  const { client, conns } = makeClient();
  const lists = collect(client, 'chats');
  client.connect();
  const { c } = await welcome(conns);
  c.deliver(msgFrame(10, CAROL, ME, CAROL)); // counted locally: 1
  assert.equal(client.unreadCount('carol'), 1);
  const p = client.chats(20);
  assert.deepEqual(c.frames().at(-1), { op: 'chats', limit: 20 });
  const frame = {
    op: 'chats', unread_total: 5,
    chats: [
      { peer: BOB, last_id: '30', ts: 3000, last_sender: BOB, kind: 'text', preview: 'latest from bob', unread: 3 },
      { peer: CAROL, last_id: '20', ts: 2000, last_sender: ME, kind: 'image', preview: 'http://h/files/a.png', unread: 2 },
    ],
  };
  c.deliver(frame);
  assert.deepEqual(await p, frame);
  assert.equal(client.unreadCount('bob'), 3);
  assert.equal(client.unreadCount('carol'), 2);
  assert.equal(client.totalUnread, 5);
  const list = lists.at(-1);
  assert.deepEqual(list.map((x) => [x.conv, x.unread, x.last.id, x.last.body, x.last.own]),
    [[BOB, 3, '30', 'latest from bob', false], [CAROL, 2, '20', 'http://h/files/a.png', true]]);
  assert.equal(list[1].last.kind, 'image');
  // A live message the list already counted (id not newer than last_id) does not count again.
  c.deliver(msgFrame(25, BOB, ME, BOB));
  assert.equal(client.unreadCount('bob'), 3);
  c.deliver(msgFrame(31, BOB, ME, BOB));
  assert.equal(client.unreadCount('bob'), 4);
  assert.equal(client.chatList()[0].last.id, '31');
  // The open conversation shows no bubble even if the server still counts it.
  client.open('carol');
  c.deliver({ ...frame });
  assert.equal(client.unreadCount('carol'), 0);
  client.close();
});

test('read(): sends the marker; read frames from any session set the count and emit read', async () => {
  const { client, conns } = makeClient();
  const reads = collect(client, 'read');
  const unread = collect(client, 'unread');
  client.connect();
  const { c } = await welcome(conns);
  c.deliver(msgFrame(7, BOB, ME, BOB));
  c.deliver(msgFrame(8, BOB, ME, BOB));
  c.deliver(msgFrame(9, CAROL, ME, CAROL));
  assert.equal(client.unreadCount('bob'), 2);
  const p = client.read('bob', '8');
  assert.deepEqual(c.frames().at(-1), { op: 'read', with: BOB, id: '8' });
  c.deliver({ op: 'read', with: BOB, id: '8', unread: 0 });
  assert.deepEqual(await p, { conv: BOB, with: BOB, id: '8', unread: 0 });
  assert.equal(client.unreadCount('bob'), 0);
  assert.deepEqual(unread.at(-1), { conv: BOB, count: 0, total: 1 });
  // Another tab read carol's conversation: this one hears of it without asking.
  c.deliver({ op: 'read', with: 'Carol@gw.shop.test', id: '9', unread: 0 });
  assert.equal(client.unreadCount('carol'), 0);
  assert.equal(client.totalUnread, 0);
  assert.deepEqual(reads.map((r) => [r.conv, r.id, r.unread]), [[BOB, '8', 0], [CAROL, '9', 0]]);
  client.close();
});

// ---- recovery ----

test('recovery: last_id on reconnect, replayed ids dropped, recovered event, reset reloads chats', async () => {
  const { client, conns } = makeClient();
  const msgs = collect(client, 'message');
  const rec = collect(client, 'recovered');
  client.connect();
  const { c } = await welcome(conns);
  c.deliver(msgFrame(100, BOB, ME, BOB));
  c.deliver(msgFrame(101, BOB, ME, BOB));
  c.drop(1006);
  const { c: c2, hello } = await welcome(conns);
  assert.equal(hello.last_id, '101');
  // Recovery overlaps live traffic: 101 again (dropped), then what was missed.
  c2.deliver(msgFrame(101, BOB, ME, BOB, { recovered: true }));
  c2.deliver(msgFrame(102, CAROL, ME, CAROL, { recovered: true }));
  c2.deliver(msgFrame(103, ME, CAROL, CAROL, { recovered: true, cid: 'k' }));
  c2.deliver(msgFrame(102, CAROL, ME, CAROL)); // live copy of a recovered one
  c2.deliver({ op: 'recovered', count: 3, reset: false });
  assert.deepEqual(msgs.map((m) => m.id), ['100', '101', '102', '103']);
  assert.equal(msgs[2].recovered, true);
  assert.equal(client.unreadCount('carol'), 1);
  assert.deepEqual(rec, [{ count: 3, reset: false }]);
  assert.equal(client.lastId, '103');
  assert.ok(!c2.frames().some((f) => f.op === 'chats'), 'no reload without reset');
  // Too much missed: the client reloads the chat list by itself.
  c2.drop(1006);
  const { c: c3, hello: h3 } = await welcome(conns);
  assert.equal(h3.last_id, '103');
  c3.deliver({ op: 'recovered', count: 0, reset: true });
  assert.deepEqual(c3.frames().at(-1), { op: 'chats' });
  c3.deliver({ op: 'chats', chats: [{ peer: CAROL, last_id: '900', ts: 9, last_sender: CAROL, kind: 'text', preview: 'x', unread: 7 }], unread_total: 7 });
  assert.equal(client.unreadCount('carol'), 7);
  assert.deepEqual(rec.at(-1), { count: 0, reset: true });
  client.close();
});

// ---- transport selection and the JSONP transport ----

/**
 * A fake of the gateway's HTTP API (docs/http-api.md) as a fetch function. Polls wait
 * until the test pushes frames or drops the session.
 */
function fakeApi() {
  const api = { calls: [], sessions: new Map(), seq: 0, uploads: [] };
  const waiting = new Map(); // token -> resolve of the pending poll
  const json = (obj, status = 200) => ({ status, text: async () => JSON.stringify(obj) });
  api.push = (token, ...frames) => {
    const s = api.sessions.get(token);
    s.queue.push(...frames);
    const w = waiting.get(token);
    if (w) { waiting.delete(token); w(json({ frames: s.queue.splice(0) })); }
  };
  api.kill = (token) => {
    api.sessions.delete(token);
    const w = waiting.get(token);
    if (w) { waiting.delete(token); w(json({ error: { code: 'closed', reason: 'gone' } }, 410)); }
  };
  api.tokens = () => [...api.sessions.keys()];
  api.fetch = async (url, init = {}) => {
    const u = new URL(url);
    const ep = u.pathname.replace(/^.*\//, '');
    const q = Object.fromEntries(u.searchParams);
    if (init.body instanceof URLSearchParams) Object.assign(q, Object.fromEntries(init.body));
    api.calls.push({ ep, q, method: init.method ?? 'GET', path: u.pathname });
    if (ep === 'login') {
      if (q.user === 'mallory') return json({ error: { code: 'bad_hello', reason: 'no' } }, 401);
      const token = `t${++api.seq}`.padEnd(32, '0');
      api.sessions.set(token, { user: q.user, queue: [], lastId: q.last_id });
      return json({ token, user: q.user, jid: `${q.user}@gw.shop.test`, session: `s${api.seq}` });
    }
    const s = api.sessions.get(q.token);
    if (ep === 'logout') { api.sessions.delete(q.token); return json({ ok: true }); }
    if (!s) return json({ error: { code: 'bad_token', reason: 'unknown' } }, 401);
    switch (ep) {
      case 'poll':
        if (s.queue.length) return json({ frames: s.queue.splice(0) });
        return new Promise((resolve) => {
          waiting.set(q.token, resolve);
          init.signal?.addEventListener('abort', () => {
            if (waiting.get(q.token) === resolve) waiting.delete(q.token);
          });
        });
      case 'send':
        if (q.to === 'nobody!') return json({ error: { code: 'bad_recipient', reason: 'x', cid: q.cid } });
        return json({ op: 'ack', cid: q.cid, id: String(500 + api.calls.length), ts: 1, queued: false });
      case 'history':
        return json({ op: 'history', with: `${q.with}`, msgs: [], more: false });
      case 'chats':
        return json({ op: 'chats', chats: [], unread_total: 0 });
      case 'read':
        return json({ op: 'read', with: q.with, id: q.id, unread: 0 });
      case 'open':
        return json({ op: 'opened', with: q.with ?? null });
      case 'upload':
        api.uploads.push({ token: q.token, body: init.body });
        return json({ url: 'http://gw.invalid/files/0123456789abcdef0123456789abcdef.png', kind: 'image', bytes: 3, type: 'image/png' });
      default:
        return json({ error: { code: 'not_found', reason: ep } }, 404);
    }
  };
  return api;
}

test('apiUrlFor derives the HTTP API next to the WebSocket URL', () => {
  assert.equal(apiUrlFor('wss://chat.example/ws'), 'https://chat.example/api/');
  assert.equal(apiUrlFor('ws://127.0.0.1:8080/gw/ws?x=1'), 'http://127.0.0.1:8080/gw/api/');
  const c = new ImgwClient({ url: 'wss://chat.example/gw/ws', user: 'a', transports: ['jsonp'], fetch: async () => {} });
  assert.equal(c.apiUrl, 'https://chat.example/gw/api/');
  assert.equal(c.uploadUrl, 'https://chat.example/gw/upload');
});

test('no WebSocket constructor: the client goes straight to the JSONP transport', async () => {
  const api = fakeApi();
  const client = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', WebSocket: undefined, fetch: api.fetch, pingIntervalMs: 0,
  });
  assert.equal(client.transportName, 'jsonp');
  const w = await client.connect();
  assert.equal(w.jid, ME);
  assert.equal(client.state, 'connected');
  assert.deepEqual(api.calls.map((x) => x.ep).slice(0, 2), ['login', 'poll']);
  assert.equal(api.calls[0].path, '/api/login');
  client.close();
});

test('a WebSocket that never opens is given up after fallbackAfter tries; jsonp takes over', async () => {
  const api = fakeApi();
  let made = 0;
  class DeadWS {
    constructor() {
      made++;
      this.readyState = 0;
      setTimeout(() => this.onclose?.({ code: 1006, reason: '' }), 1);
    }
    send() {}
    close() {}
  }
  const client = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', WebSocket: DeadWS, fetch: api.fetch,
    backoff: { minMs: 1, maxMs: 2 }, pingIntervalMs: 0, fallbackAfter: 3,
  });
  const switched = collect(client, 'transport');
  const opens = collect(client, 'open');
  assert.equal(client.transportName, 'websocket');
  await client.connect();
  assert.equal(made, 3);
  assert.equal(client.transportName, 'jsonp');
  assert.equal(switched.length, 1);
  assert.equal(switched[0].name, 'jsonp');
  assert.match(switched[0].reason, /3 times/);
  assert.equal(opens[0].transport, 'jsonp');
  client.close();

  // A constructor that throws (blocked by policy) falls back at once.
  const api2 = fakeApi();
  const c2 = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', fetch: api2.fetch, pingIntervalMs: 0,
    WebSocket: class { constructor() { throw new Error('SecurityError'); } },
  });
  c2.on('error', () => {});
  await c2.connect();
  assert.equal(c2.transportName, 'jsonp');
  c2.close();
});

test('a WebSocket that has worked once is not abandoned when the gateway goes away', async () => {
  const { client, conns } = (() => {
    const t = scriptedTransport();
    let n = 0;
    // The scripted factory stands in for WebSocket through a constructor shim.
    class ShimWS {
      constructor(url) {
        n++;
        this.readyState = 0;
        this.conn = t.factory(url, {
          onOpen: () => { this.readyState = 1; this.onopen?.(); },
          onMessage: (data) => this.onmessage?.({ data }),
          onClose: (code, reason) => this.onclose?.({ code, reason }),
        });
      }
      send(x) { this.conn.send(x); }
      close(code, reason) { this.conn.close(code, reason); }
    }
    const c = new ImgwClient({
      url: 'ws://gw.invalid/ws', user: 'alice', WebSocket: ShimWS, fetch: async () => { throw new Error('no'); },
      backoff: { minMs: 1, maxMs: 2 }, pingIntervalMs: 0, fallbackAfter: 2,
    });
    return { client: c, conns: t.conns, made: () => n };
  })();
  client.connect();
  await welcome(conns);
  for (let i = 0; i < 4; i++) {
    const k = conns.length;
    conns.at(-1).drop(1006);
    await until(() => conns.length === k + 1, 2000, 'a websocket retry');
  }
  assert.equal(client.transportName, 'websocket');
  client.close();
  // transports: ['jsonp'] forces the fallback even with a WebSocket at hand.
  const api = fakeApi();
  const forced = new ImgwClient({ url: 'ws://gw.invalid/ws', user: 'bob', WebSocket: class {}, transports: ['jsonp'], fetch: api.fetch, pingIntervalMs: 0 });
  assert.equal(forced.transportName, 'jsonp');
  await forced.connect();
  forced.close();
});

test('JSONP transport: same API and events; a lost session logs in again with last_id', async () => {
  const api = fakeApi();
  const client = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', transports: ['jsonp'], fetch: api.fetch,
    backoff: { minMs: 1, maxMs: 2 }, pingIntervalMs: 0, pollTimeoutS: 5,
  });
  const msgs = collect(client, 'message');
  const reads = collect(client, 'read');
  await client.connect();
  const [t1] = api.tokens();
  assert.equal(api.calls[0].q.last_id, undefined);
  assert.equal(api.calls.find((x) => x.ep === 'poll').q.timeout, '5');
  // Frames arrive through poll.
  api.push(t1, msgFrame(41, BOB, ME, BOB), { op: 'read', with: CAROL, id: '3', unread: 0 });
  await until(() => msgs.length === 1 && reads.length === 1, 2000, 'polled frames');
  assert.equal(msgs[0].body, 'm41');
  // Calls: send (POST form through fetch), history, chats, read, open.
  const ack = await client.send('bob', 'hello & more', { cid: 'cid-1' });
  assert.equal(ack.cid, 'cid-1');
  const sendCall = api.calls.find((x) => x.ep === 'send');
  assert.equal(sendCall.method, 'POST');
  assert.deepEqual({ to: sendCall.q.to, body: sendCall.q.body, cid: sendCall.q.cid }, { to: 'bob', body: 'hello & more', cid: 'cid-1' });
  assert.equal((await client.history('bob', { before: '41', limit: 3 })).with, BOB);
  const hq = api.calls.find((x) => x.ep === 'history').q;
  assert.deepEqual([hq.with, hq.before, hq.limit], [BOB, '41', '3']);
  assert.equal((await client.chats()).unread_total, 0);
  assert.equal((await client.read('bob', '41')).unread, 0);
  client.open('bob');
  await until(() => api.calls.some((x) => x.ep === 'open' && x.q.with === BOB), 2000, 'open call');
  await assert.rejects(client.send('nobody!', 'x'), (e) => e.code === 'bad_recipient');
  // An image send goes out with kind=image.
  const up = await client.sendImage('bob', new Uint8Array([1, 2, 3]));
  assert.equal(up.upload.kind, 'image');
  assert.equal(api.uploads.at(-1).token, t1, 'the session\'s own token');
  assert.equal(api.calls.filter((x) => x.ep === 'send').at(-1).q.kind, 'image');

  // The gateway closes the session (e.g. it overflowed): log in again with last_id.
  const reopened = new Promise((r) => { const off = client.on('open', (w) => { off(); r(w); }); });
  api.kill(t1);
  const w2 = await reopened;
  assert.equal(w2.reconnected, true);
  const logins = api.calls.filter((x) => x.ep === 'login');
  assert.equal(logins.length, 2);
  assert.equal(logins[1].q.last_id, '41');
  assert.equal(logins[1].q.user, 'alice');
  const t2 = api.tokens().at(-1);
  api.push(t2, msgFrame(41, BOB, ME, BOB, { recovered: true }), msgFrame(42, BOB, ME, BOB, { recovered: true }),
    { op: 'recovered', count: 2, reset: false });
  await until(() => msgs.length === 2, 2000, 'recovered message');
  assert.equal(msgs[1].id, '42');
  client.close();
  await until(() => !api.sessions.has(t2), 2000, 'logout on close');
});

test('JSONP transport: a refused login is an authentication failure, not retried', async () => {
  const api = fakeApi();
  const client = new ImgwClient({ url: 'ws://gw.invalid/ws', user: 'mallory', transports: ['jsonp'], fetch: api.fetch, pingIntervalMs: 0 });
  const auth = collect(client, 'authfailed');
  await assert.rejects(client.connect(), (e) => e.code === 'bad_hello');
  assert.equal(auth.length, 1);
  assert.equal(auth[0].code, 4401);
  assert.equal(client.state, 'closed');
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(api.calls.filter((x) => x.ep === 'login').length, 1);
});

test('JSONP transport: calls go out one at a time, in order', async () => {
  const order = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const api = fakeApi();
  const slow = async (url, init) => {
    const ep = new URL(url).pathname.replace(/^.*\//, '');
    if (ep === 'poll' || ep === 'login' || ep === 'logout') return api.fetch(url, init);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    order.push(new URLSearchParams(init.body ?? new URL(url).search).get('cid') ?? ep);
    await new Promise((r) => setTimeout(r, 3));
    inFlight--;
    return api.fetch(url, init);
  };
  const client = new ImgwClient({ url: 'ws://gw.invalid/ws', user: 'alice', transports: ['jsonp'], fetch: slow, pingIntervalMs: 0 });
  await client.connect();
  await Promise.all([client.send('bob', '1', { cid: 'a' }), client.send('bob', '2', { cid: 'b' }), client.chats(), client.send('bob', '3', { cid: 'c' })]);
  assert.deepEqual(order, ['a', 'b', 'chats', 'c']);
  assert.equal(maxInFlight, 1);
  client.close();
});

test('uploadImage over WebSocket: a short API session for the token, logged out afterwards', async () => {
  const api = fakeApi();
  const { client, conns } = makeClient({ fetch: api.fetch });
  client.connect();
  const { c } = await welcome(conns);
  const r = await client.uploadImage(new Uint8Array([137, 80, 78]));
  assert.match(r.url, /\/files\//);
  const eps = api.calls.map((x) => x.ep);
  assert.deepEqual(eps.slice(0, 2), ['login', 'upload']);
  assert.equal(api.calls[1].method, 'POST');
  assert.equal(api.calls[1].path, '/upload');
  await until(() => api.calls.some((x) => x.ep === 'logout'), 2000, 'logout of the upload session');
  // sendImage sends the URL with kind image over the WebSocket.
  const p = client.sendImage('bob', new Uint8Array([1]));
  await until(() => c.frames().some((f) => f.op === 'send'), 2000, 'the send frame');
  const f = c.frames().find((x) => x.op === 'send');
  assert.equal(f.kind, 'image');
  assert.equal(f.body, r.url);
  c.deliver({ op: 'ack', cid: f.cid, id: '77', ts: 7 });
  assert.equal((await p).upload.url, r.url);
  // Upload errors carry the gateway's code.
  const bad = makeClient({ fetch: async (url) => (new URL(url).pathname.endsWith('/upload')
    ? { status: 415, text: async () => '{"error":{"code":"unsupported_type","reason":"not a picture"}}' }
    : api.fetch(url)) });
  bad.client.connect();
  await welcome(bad.conns);
  await assert.rejects(bad.client.uploadImage(new Uint8Array([0])), (e) => e.code === 'unsupported_type');
  bad.client.close();
  client.close();
});

test('jsonpTransport() without fetch or DOM says so', () => {
  assert.throws(() => jsonpTransport({ apiUrl: 'http://h/api/', mode: 'script' }), /DOM/);
});

test('JSONP transport: failed polls are retried with backoff; past pollRetries the client logs in again', async () => {
  const api = fakeApi();
  let failPolls = 0;
  const flaky = async (url, init) => {
    if (new URL(url).pathname.endsWith('/poll') && failPolls > 0) {
      failPolls--;
      throw new TypeError('fetch failed');
    }
    return api.fetch(url, init);
  };
  const client = new ImgwClient({
    url: 'ws://gw.invalid/ws', user: 'alice', transports: ['jsonp'], fetch: flaky,
    backoff: { minMs: 1, maxMs: 2 }, pingIntervalMs: 0,
  });
  const closes = collect(client, 'close');
  failPolls = 2;
  await client.connect();
  const [t1] = api.tokens();
  await until(() => failPolls === 0, 5000, 'two failed polls');
  api.push(t1, msgFrame(5, BOB, ME, BOB));
  await until(() => client.lastId === '5', 5000, 'a frame after the failures');
  assert.equal(api.calls.filter((x) => x.ep === 'login').length, 1, 'same session');
  assert.equal(closes.length, 0);
  // Four failures in a row (more than the 3 retries): the session is given up.
  failPolls = 4;
  api.push(t1, msgFrame(6, BOB, ME, BOB)); // answers the waiting poll; the next ones fail
  await until(() => api.calls.filter((x) => x.ep === 'login').length === 2, 5000, 'a new login');
  assert.equal(closes[0].reconnect, true);
  assert.equal(api.calls.filter((x) => x.ep === 'login')[1].q.last_id, '6');
  client.close();
});
