// mod_imgw_companion against a real Prosody: a raw XEP-0114 component plays the
// gateway, real c2s clients play the app users. Run: node --test tests/companion/
//
// "Nothing was copied/delivered" is proved by sending a marker message afterwards and
// checking that the marker is the next thing that arrives: the server handles one
// sender's stanzas in order, so anything wrongly produced earlier would come first.

import { describe, it, before, after } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import {
  login, connectComponent, nextMessage, nextPresence, iqError, stopAll, xml,
} from '../lib/xmpp.mjs';

const NS = 'urn:imgw:companion:0';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_PRIV = 'urn:xmpp:privilege:2';
const DOMAIN = 'shop.test';
const GW = 'gw.shop.test';
const OTHER = 'other.shop.test';
const WAIT = 5000;

let p;
let gw; // the trusted gateway component
let other; // a second component that is not the gateway
const open = []; // clients to stop at the end

async function user(username, resource = 'phone', password = 'pw') {
  const c = await login({ port: p.c2sPort, domain: DOMAIN, username, password, resource });
  open.push(c);
  return c;
}

function userIq(action, children, from = gw) {
  return from.iqCaller.request(
    xml('iq', { type: 'set', to: DOMAIN }, xml('user', { xmlns: NS, action }, ...children)),
    WAIT,
  );
}

const el = (name, text) => xml(name, {}, text);

function chat(to, body, attrs = {}) {
  return xml('message', { to, type: 'chat', ...attrs }, ...(body === null ? [] : [el('body', body)]));
}

/** The inner <message> of a companion copy, or null when m is not a copy. */
function inner(m) {
  return m.getChild('copy', NS)?.getChild('forwarded', NS_FORWARD)?.getChild('message', 'jabber:client') ?? null;
}

function isCopy(m) {
  return inner(m) !== null;
}

function sendAs(from, to, body, id, via = gw) {
  return via.send(xml('message', { to: DOMAIN, id: `p-${id}` },
    xml('privilege', { xmlns: NS_PRIV },
      xml('forwarded', { xmlns: NS_FORWARD },
        xml('message', { xmlns: 'jabber:client', from, to, id, type: 'chat' }, el('body', body))))));
}

let seq = 0;
const nextId = (prefix) => `${prefix}-${++seq}`;

before(async () => {
  p = await startProsody({
    domain: DOMAIN,
    components: [{ domain: GW, secret: 's3cret' }, { domain: OTHER, secret: 'other' }],
    users: [['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['dave', 'pw']],
    companion: { gateway: GW },
    // mod_mam stamps XEP-0359 stanza-ids, which the copies must keep.
    modules: ['mam'],
  });
  gw = await connectComponent({ port: p.componentPort, domain: GW, secret: 's3cret' });
  other = await connectComponent({ port: p.componentPort, domain: OTHER, secret: 'other' });
});

after(async () => {
  await stopAll(...open, gw, other);
  if (p) {
    const errors = p.stderrText();
    await p.cleanup();
    // A Lua error in the module shows up here even if no assertion noticed it.
    assert.equal(errors.trim(), '', `Prosody logged errors:\n${errors}`);
  }
});

describe('discovery', () => {
  it('advertises urn:imgw:companion:0 to the gateway', async () => {
    const res = await gw.iqCaller.request(
      xml('iq', { type: 'get', to: DOMAIN }, xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })),
      WAIT,
    );
    const query = res.is('iq') ? res.getChild('query') : res;
    const features = query.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(features.includes(NS), `features: ${features.join(' ')}`);
  });
});

describe('registration', () => {
  it('creates a user who can then log in over c2s, with properties stored', async () => {
    await userIq('create', [
      el('username', 'Buyer42'), el('password', 'sekret'), el('name', 'Buyer Forty-Two'),
      el('email', 'b42@example.net'),
      xml('property', { name: 'type' }, 'buyer'),
      xml('property', { name: 'avatar' }, 'https://cdn.example/a.png'),
    ]);
    const c = await user('buyer42', 'web1', 'sekret');
    assert.equal(c.jid.bare().toString(), `buyer42@${DOMAIN}`);
    const props = fs.readFileSync(path.join(p.dir, 'data', 'shop%2etest', 'imgw_props', 'buyer42.dat'), 'utf8');
    assert.match(props, /https:\/\/cdn\.example\/a\.png/);
    assert.match(props, /buyer/);
  });

  it('creates a user with a random password when none is given', async () => {
    await userIq('create', [el('username', 'nopass')]);
    await assert.rejects(login({ port: p.c2sPort, domain: DOMAIN, username: 'nopass', password: '' }));
  });

  it('answers conflict to a duplicate create', async () => {
    assert.deepEqual(await iqError(userIq('create', [el('username', 'alice'), el('password', 'x')])),
      { condition: 'conflict', type: 'cancel' });
    // The existing account is untouched.
    await user('alice', 'still-pw');
  });

  it('answers not-acceptable to a bad or missing username', async () => {
    for (const bad of ['bad name', 'a@b', 'x'.repeat(65), '', 'ünï']) {
      assert.deepEqual(await iqError(userIq('create', [el('username', bad), el('password', 'x')])),
        { condition: 'not-acceptable', type: 'modify' }, `username ${JSON.stringify(bad)}`);
    }
    assert.deepEqual(await iqError(userIq('create', [el('password', 'x')])),
      { condition: 'not-acceptable', type: 'modify' });
  });

  it('answers bad-request to an unknown action', async () => {
    assert.deepEqual(await iqError(userIq('rename', [el('username', 'alice')])),
      { condition: 'bad-request', type: 'modify' });
  });

  it('updates the password of an existing user and refuses unknown ones', async () => {
    await userIq('create', [el('username', 'upd'), el('password', 'one')]);
    await userIq('update', [el('username', 'upd'), el('password', 'two'), xml('property', { name: 'shop' }, '1234')]);
    await user('upd', 'r', 'two');
    await assert.rejects(login({ port: p.c2sPort, domain: DOMAIN, username: 'upd', password: 'one' }));
    assert.deepEqual(await iqError(userIq('update', [el('username', 'ghost'), el('password', 'x')])),
      { condition: 'item-not-found', type: 'cancel' });
  });

  it('deletes a user, and answers item-not-found for one that does not exist', async () => {
    await userIq('create', [el('username', 'gone'), el('password', 'pw')]);
    await userIq('delete', [el('username', 'gone')]);
    await assert.rejects(login({ port: p.c2sPort, domain: DOMAIN, username: 'gone', password: 'pw' }));
    assert.deepEqual(await iqError(userIq('delete', [el('username', 'gone')])),
      { condition: 'item-not-found', type: 'cancel' });
  });

  it('is forbidden to a component that is not the gateway', async () => {
    assert.deepEqual(await iqError(userIq('create', [el('username', 'intruder'), el('password', 'x')], other)),
      { condition: 'forbidden', type: 'auth' });
    await assert.rejects(login({ port: p.c2sPort, domain: DOMAIN, username: 'intruder', password: 'x' }));
  });

  it('is forbidden to a c2s client', async () => {
    const dave = await user('dave', 'reg');
    assert.deepEqual(await iqError(userIq('create', [el('username', 'intruder2'), el('password', 'x')], dave)),
      { condition: 'forbidden', type: 'auth' });
    await assert.rejects(login({ port: p.c2sPort, domain: DOMAIN, username: 'intruder2', password: 'x' }));
  });
});

describe('message copy', () => {
  let alice;
  let bob1;
  let bob2;
  before(async () => {
    alice = await user('alice', 'copy');
    bob1 = await user('bob', 'one');
    bob2 = await user('bob', 'two');
  });

  // Sends a normal chat from alice and asserts that it is the next copy at the gateway.
  async function expectNextCopyIsMarker() {
    const id = nextId('marker');
    await alice.send(chat(`carol@${DOMAIN}`, 'marker', { id }));
    const next = await nextMessage(gw, isCopy, WAIT);
    assert.equal(inner(next).attrs.id, id, `expected the marker, got ${next}`);
  }

  it('copies a chat to an online user with two resources exactly once', async () => {
    const id = nextId('a1');
    const body = 'Hello <b> ünïcode';
    await alice.send(chat(`bob@${DOMAIN}`, body, { id }));
    // Both resources get it (equal priority), yet one copy.
    await nextMessage(bob1, (m) => m.attrs.id === id, WAIT);
    await nextMessage(bob2, (m) => m.attrs.id === id, WAIT);
    const copy = await nextMessage(gw, isCopy, WAIT);
    assert.equal(copy.attrs.from, DOMAIN);
    assert.equal(copy.attrs.to, GW);
    const fwd = copy.getChild('copy', NS).getChild('forwarded', NS_FORWARD);
    assert.match(fwd.getChild('delay', 'urn:xmpp:delay').attrs.stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const m = inner(copy);
    assert.equal(m.attrs.from, `alice@${DOMAIN}/copy`);
    assert.equal(m.attrs.to, `bob@${DOMAIN}`);
    assert.equal(m.attrs.id, id);
    assert.equal(m.attrs.type, 'chat');
    assert.equal(m.getChildText('body'), body);
    const sid = m.getChild('stanza-id', 'urn:xmpp:sid:0');
    assert.ok(sid?.attrs.id, `stanza-id kept in ${m}`);
    assert.equal(sid.attrs.by, `bob@${DOMAIN}`); // Prosody's archive is per user
    await expectNextCopyIsMarker();
  });

  it('copies a message to a full JID once, keeping origin-id', async () => {
    const id = nextId('full');
    await alice.send(xml('message', { to: `bob@${DOMAIN}/two`, id },
      el('body', 'to one resource'), xml('origin-id', { xmlns: 'urn:xmpp:sid:0', id: `o-${id}` })));
    await nextMessage(bob2, (m) => m.attrs.id === id, WAIT);
    const m = inner(await nextMessage(gw, isCopy, WAIT));
    assert.equal(m.attrs.id, id);
    assert.equal(m.attrs.to, `bob@${DOMAIN}/two`);
    assert.equal(m.attrs.type, undefined); // a missing type is normal, and kept missing
    assert.equal(m.getChild('origin-id', 'urn:xmpp:sid:0').attrs.id, `o-${id}`);
    await expectNextCopyIsMarker();
  });

  it('copies a chat to an offline user exactly once', async () => {
    const id = nextId('off');
    await alice.send(chat(`carol@${DOMAIN}`, 'are you there?', { id }));
    const m = inner(await nextMessage(gw, isCopy, WAIT));
    assert.equal(m.attrs.id, id);
    assert.equal(m.attrs.to, `carol@${DOMAIN}`);
    await expectNextCopyIsMarker();
    // It was also stored offline: carol gets it when she logs in.
    const carol = await user('carol', 'late');
    await nextMessage(carol, (x) => x.attrs.id === id, WAIT);
    await stopAll(carol);
  });

  it('does not copy groupchat, headline, error or body-less messages', async () => {
    const to = `bob@${DOMAIN}`;
    await alice.send(chat(to, 'gc', { type: 'groupchat', id: nextId('gc') }));
    await alice.send(chat(to, 'hl', { type: 'headline', id: nextId('hl') }));
    await alice.send(xml('message', { to, type: 'error', id: nextId('err') }, el('body', 'err'),
      xml('error', { type: 'cancel' }, xml('item-not-found', { xmlns: 'urn:ietf:params:xml:ns:xmpp-stanzas' }))));
    await alice.send(chat(to, null, { id: nextId('nobody') }));
    await alice.send(xml('message', { to, id: nextId('state') },
      xml('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await expectNextCopyIsMarker();
  });

  it('does not copy messages to users who do not exist', async () => {
    await alice.send(chat(`nobody@${DOMAIN}`, 'hello?', { id: nextId('nobody') }));
    await nextMessage(alice, (m) => m.attrs.type === 'error' && m.attrs.from === `nobody@${DOMAIN}`, WAIT);
    await expectNextCopyIsMarker();
  });

  it('does not copy what the gateway itself sends to a user', async () => {
    await gw.send(xml('message', { to: `bob@${DOMAIN}`, from: GW, type: 'chat', id: nextId('gw') }, el('body', 'notice')));
    await gw.send(xml('message', { to: `bob@${DOMAIN}`, from: `robot@${GW}`, type: 'chat', id: nextId('gwu') }, el('body', 'hi')));
    await nextMessage(bob1, (m) => m.attrs.from === `robot@${GW}`, WAIT);
    await expectNextCopyIsMarker();
  });
});

describe('send as user', () => {
  let alice;
  before(async () => {
    alice = await user('alice', 'sendas');
  });

  it('delivers from user@domain/web with the body byte for byte, and copies it', async () => {
    const body = `<b>&amp;'" ünïcode ✓ 😀 \u{1F469}\u200D\u{1F4BB} end`;
    const id = nextId('sa');
    await sendAs(`bob@${DOMAIN}`, `alice@${DOMAIN}`, body, id);
    const m = await nextMessage(alice, (x) => x.attrs.id === id, WAIT);
    assert.equal(m.attrs.from, `bob@${DOMAIN}/web`);
    assert.equal(m.attrs.type, 'chat');
    assert.equal(m.getChildText('body'), body);
    assert.equal(Buffer.compare(Buffer.from(m.getChildText('body')), Buffer.from(body)), 0);
    // The recipient's copy reaches the gateway like any other message.
    const c = inner(await nextMessage(gw, isCopy, WAIT));
    assert.equal(c.attrs.id, id);
    assert.equal(c.attrs.from, `bob@${DOMAIN}/web`);
    assert.equal(c.getChildText('body'), body);
  });

  it('keeps an explicit resource', async () => {
    const id = nextId('res');
    await sendAs(`bob@${DOMAIN}/tab2`, `alice@${DOMAIN}`, 'x', id);
    const m = await nextMessage(alice, (x) => x.attrs.id === id, WAIT);
    assert.equal(m.attrs.from, `bob@${DOMAIN}/tab2`);
  });

  async function expectNextAtAliceIsLegit() {
    const id = nextId('legit');
    await sendAs(`bob@${DOMAIN}`, `alice@${DOMAIN}`, 'legit', id);
    const m = await nextMessage(alice, () => true, WAIT);
    assert.equal(m.attrs.id, id, `expected the legitimate send, got ${m}`);
  }

  function expectError(entity, id, condition, type) {
    return nextMessage(entity, (m) => m.attrs.id === `p-${id}`, WAIT).then((m) => {
      assert.equal(m.attrs.type, 'error');
      const e = m.getChild('error');
      assert.equal(e.attrs.type, type);
      assert.ok(e.getChild(condition, 'urn:ietf:params:xml:ns:xmpp-stanzas'), `${condition} in ${m}`);
    });
  }

  it('is forbidden to a component that is not the gateway, and routes nothing', async () => {
    const id = nextId('forged');
    await sendAs(`bob@${DOMAIN}`, `alice@${DOMAIN}`, 'forged', id, other);
    await expectError(other, id, 'forbidden', 'auth');
    await expectNextAtAliceIsLegit();
  });

  it('is forbidden to a c2s client, and routes nothing', async () => {
    const dave = await user('dave', 'forger');
    const id = nextId('forged-c2s');
    await sendAs(`bob@${DOMAIN}`, `alice@${DOMAIN}`, 'forged', id, dave);
    await expectError(dave, id, 'forbidden', 'auth');
    await expectNextAtAliceIsLegit();
  });

  it('is forbidden with an inner from outside the domain', async () => {
    const id = nextId('foreign');
    await sendAs('mallory@evil.test', `alice@${DOMAIN}`, 'forged', id);
    await expectError(gw, id, 'forbidden', 'auth');
    await expectNextAtAliceIsLegit();
  });

  it('answers bad-request to an inner message without to, or of another type', async () => {
    const id1 = nextId('noto');
    await gw.send(xml('message', { to: DOMAIN, id: `p-${id1}` }, xml('privilege', { xmlns: NS_PRIV },
      xml('forwarded', { xmlns: NS_FORWARD },
        xml('message', { xmlns: 'jabber:client', from: `bob@${DOMAIN}`, id: id1 }, el('body', 'x'))))));
    await expectError(gw, id1, 'bad-request', 'modify');
    const id2 = nextId('gc');
    await gw.send(xml('message', { to: DOMAIN, id: `p-${id2}` }, xml('privilege', { xmlns: NS_PRIV },
      xml('forwarded', { xmlns: NS_FORWARD },
        xml('message', { xmlns: 'jabber:client', from: `bob@${DOMAIN}`, to: `alice@${DOMAIN}`, type: 'groupchat', id: id2 },
          el('body', 'x'))))));
    await expectError(gw, id2, 'bad-request', 'modify');
    await expectNextAtAliceIsLegit();
  });
});

describe('web presence', () => {
  let erin;
  let frank;
  const presenceIq = (username, available, via = gw) => via.iqCaller.request(
    xml('iq', { type: 'set', to: DOMAIN }, xml('presence', { xmlns: NS, user: username, available: String(available) })),
    WAIT,
  );
  const fromWeb = (who) => (x) => x.attrs.from === `${who}@${DOMAIN}/web`;

  before(async () => {
    await p.register('erin', 'pw');
    await p.register('frank', 'pw');
    erin = await user('erin', 'phone');
    frank = await user('frank', 'phone');
    // erin subscribes to frank's presence; frank approves.
    await erin.send(xml('presence', { to: `frank@${DOMAIN}`, type: 'subscribe' }));
    await nextPresence(frank, (x) => x.attrs.type === 'subscribe', WAIT);
    await frank.send(xml('presence', { to: `erin@${DOMAIN}`, type: 'subscribed' }));
    // Prosody saves frank's roster, then sends erin frank's current presence.
    await nextPresence(erin, (x) => x.attrs.from === `frank@${DOMAIN}/phone` && !x.attrs.type, WAIT);
  });

  it('broadcasts available and unavailable from user@domain/web to subscribed contacts', async () => {
    await presenceIq('frank', true);
    const on = await nextPresence(erin, fromWeb('frank'), WAIT);
    assert.equal(on.attrs.type, undefined);
    // frank's own client sees its web session as another resource.
    await nextPresence(frank, fromWeb('frank'), WAIT);
    await presenceIq('frank', false);
    const off = await nextPresence(erin, fromWeb('frank'), WAIT);
    assert.equal(off.attrs.type, 'unavailable');
  });

  it('answers a contact\'s probe with the web presence', async () => {
    await presenceIq('frank', true);
    await nextPresence(erin, fromWeb('frank'), WAIT);
    // A new session of erin sends initial presence, and Prosody probes frank for it.
    const erin2 = await user('erin', 'laptop');
    await nextPresence(erin2, (x) => fromWeb('frank')(x) && x.attrs.type === undefined, WAIT);
    await presenceIq('frank', false);
  });

  it('does not tell contacts who are not subscribed', async () => {
    // frank is not subscribed to erin, so erin's web presence goes nowhere near frank.
    // A fresh session of frank has seen no web presence yet.
    const frank2 = await user('frank', 'fresh');
    await presenceIq('erin', true);
    await nextPresence(erin, fromWeb('erin'), WAIT); // her own client sees it
    await presenceIq('frank', true);
    const next = await nextPresence(frank2, (x) => x.attrs.from?.endsWith('/web'), WAIT);
    assert.equal(next.attrs.from, `frank@${DOMAIN}/web`, `frank saw ${next}`);
    await presenceIq('erin', false);
    await presenceIq('frank', false);
  });

  it('is forbidden to others, and item-not-found for unknown users', async () => {
    assert.deepEqual(await iqError(presenceIq('frank', true, other)), { condition: 'forbidden', type: 'auth' });
    assert.deepEqual(await iqError(presenceIq('nobody', true)), { condition: 'item-not-found', type: 'cancel' });
  });
});
