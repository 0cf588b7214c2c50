// Unit tests of the browser client's own logic: backoff, the outbox across reconnects,
// unread counting, authentication failure. A scripted in-process transport stands in for
// the network; tests against the real gateway are in client_gateway.test.mjs.
//
//   node --test tests/client/client.test.mjs

import test from 'node:test';
import assert from 'node:assert/strict';

import {
  ImgwClient, backoffDelay, backoffCeiling, bareJid, compareIds, webSocketTransport,
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
