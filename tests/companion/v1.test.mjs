// Companion protocol version 1 (docs/companion-protocol.md sections 7-10) against the real
// Prosody module: a raw XEP-0114 component plays the gateway and checks each rule of the
// specification on the wire. The Openfire plugin implements the same sections; its JUnit
// tests pin the same rules (e.g. the checksum vector below).
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { within } from '../lib/bounded.mjs';
import { connectComponent, iqError, login, nextMessage, nextPresence, stopAll, xml } from '../lib/xmpp.mjs';

const NS0 = 'urn:imgw:companion:0';
const NS1 = 'urn:imgw:companion:1';
const DOMAIN = 'shop.test';
const GW = 'gw.shop.test';
const OTHER = 'other.shop.test';

/** FNV-1a 64 of a user name, and the XOR of a set's hashes: the `sum` of section 7. */
function fnv(s) {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(s)) h = ((h ^ BigInt(b)) * 0x100000001b3n) & 0xffffffffffffffffn;
  return h;
}
const sumOf = (users) => users.reduce((x, u) => x ^ fnv(u), 0n).toString(16).padStart(16, '0');

let p, gw, other, seller;
let bootN = 0;
const newBoot = () => `${(++bootN).toString(16).padStart(4, '0')}${'ab'.repeat(8)}`;

function gatewayIq(attrs, via = gw) {
  return via.iqCaller.request(xml('iq', { type: 'set', to: DOMAIN },
    xml('gateway', { xmlns: NS1, lease: '30', mark: '0', users: '0', sum: '0'.repeat(16), ...attrs })), 5000);
}
function webIq(node, boot, children, reset = 'false', via = gw) {
  return via.iqCaller.request(xml('iq', { type: 'set', to: DOMAIN },
    xml('web', { xmlns: NS1, node, boot, reset }, ...children.map(([op, u]) => xml(op, { u })))), 5000);
}
function acksIq(text, via = gw) {
  return via.iqCaller.request(xml('iq', { type: 'set', to: DOMAIN }, xml('acks', { xmlns: NS1 }, text)), 5000);
}
const statusOf = (res) => (res.is('status') ? res : res.getChild('status', NS1));
const copySeq = (m) => m.getChild('copy', NS0)?.attrs.seq;
const copyBody = (m) => m.getChild('copy', NS0)?.getChild('forwarded', 'urn:xmpp:forward:0')
  ?.getChild('message')?.getChildText('body');
const chat = (to, body, id) => xml('message', { to, type: 'chat', id }, xml('body', {}, body));
const pause = (ms) => new Promise((r) => setTimeout(r, ms));

/** Takes every recorded copy matching pred out of gw's inbox; returns their seqs. */
async function drain(pred) {
  const seqs = [];
  for (;;) {
    try {
      seqs.push(copySeq(await nextMessage(gw, (m) => pred(copyBody(m) || ''), 50)));
    } catch {
      return seqs;
    }
  }
}

before(async () => {
  p = await startProsody({
    domain: DOMAIN,
    components: [{ domain: GW, secret: 's3cret' }, { domain: OTHER, secret: 'other' }],
    users: [['seller7', 'pw'], ['alice', 'pw'], ['bob', 'pw'], ['carol', 'pw'], ['dave', 'pw']],
    companion: { gateway: GW },
    modules: ['offline'],
    hostConfig: '  imgw_ack_timeout = 1',
    logLevel: 'info',
  });
  gw = await connectComponent({ port: p.componentPort, domain: GW, secret: 's3cret' });
  other = await connectComponent({ port: p.componentPort, domain: OTHER, secret: 'other' });
  seller = await login({ port: p.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
});

after(async () => {
  await stopAll(seller, gw, other);
  if (p) {
    const errors = p.stderrText();
    await p.cleanup();
    assert.equal(errors.trim(), '', `Prosody logged errors:\n${errors}`);
  }
});

describe('version 1: discovery and instances (section 7)', () => {
  it('announces urn:imgw:companion:1 next to :0', async () => {
    const res = await gw.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN },
      xml('query', { xmlns: 'http://jabber.org/protocol/disco#info' })), 5000);
    const q = res.is('iq') ? res.getChild('query') : res;
    const vars = q.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(vars.includes(NS0) && vars.includes(NS1), vars.join(' '));
  });

  it('registers an instance, echoes the mark and says ok when the checksum agrees', async () => {
    const boot = newBoot();
    const s = statusOf(await gatewayIq({ node: '1', boot, mark: '17' }));
    assert.deepEqual({ node: s.attrs.node, boot: s.attrs.boot, mark: s.attrs.mark, sync: s.attrs.sync },
      { node: '1', boot, mark: '17', sync: 'ok' });
  });

  it('keeps the web set and its checksum: FNV-1a-64 XOR, e.g. {alice, bob} = 50c66ea276ea3353', async () => {
    assert.equal(sumOf(['alice', 'bob']), '50c66ea276ea3353');
    const boot = newBoot();
    await gatewayIq({ node: '2', boot });
    await webIq('2', boot, [['on', 'alice'], ['on', 'bob']]);
    assert.equal(statusOf(await gatewayIq({ node: '2', boot, users: '2', sum: sumOf(['alice', 'bob']) })).attrs.sync, 'ok');
    assert.equal(statusOf(await gatewayIq({ node: '2', boot, users: '1', sum: sumOf(['alice']) })).attrs.sync, 'resync',
      'a view that differs asks for the full list');
    // reset='true' replaces the set.
    await webIq('2', boot, [['on', 'carol']], 'true');
    assert.equal(statusOf(await gatewayIq({ node: '2', boot, users: '1', sum: sumOf(['carol']) })).attrs.sync, 'ok');
    await gatewayIq({ node: '2', boot, lease: '0' });
  });

  it('refuses requests from anyone but the gateway, and malformed ones', async () => {
    assert.equal((await iqError(gatewayIq({ node: '3', boot: newBoot() }, other))).condition, 'forbidden');
    assert.equal((await iqError(acksIq('1', other))).condition, 'forbidden');
    assert.equal((await iqError(gatewayIq({ node: '3', boot: 'not-hex!' }))).condition, 'bad-request');
    assert.equal((await iqError(gatewayIq({ node: '5000', boot: newBoot() }))).condition, 'bad-request');
    assert.equal((await iqError(webIq('3', newBoot(), [['on', 'alice']]))).condition, 'item-not-found',
      'web for an instance that never said <gateway>');
    const boot = newBoot();
    await gatewayIq({ node: '3', boot });
    assert.equal((await iqError(webIq('3', boot, [['on', 'Not Valid']]))).condition, 'bad-request');
    assert.equal((await iqError(acksIq('12-3'))).condition, 'bad-request');
    await gatewayIq({ node: '3', boot, lease: '0' });
  });
});

describe('version 1: web users (section 8)', () => {
  it('a listed user is an available resource for contacts; lease 0 takes it away at once', async () => {
    // seller7 subscribes to dave, dave approves from a short c2s login.
    const dave = await login({ port: p.c2sPort, domain: DOMAIN, username: 'dave', password: 'pw', resource: 'setup' });
    await seller.send(xml('presence', { to: `dave@${DOMAIN}`, type: 'subscribe' }));
    await nextPresence(dave, (x) => x.attrs.type === 'subscribe', 5000);
    await dave.send(xml('presence', { to: `seller7@${DOMAIN}`, type: 'subscribed' }));
    await stopAll(dave);
    const fromWeb = (x) => x.attrs.from === `dave@${DOMAIN}/web`;
    const boot = newBoot();
    await gatewayIq({ node: '4', boot });
    await webIq('4', boot, [['on', 'dave']]);
    assert.equal((await nextPresence(seller, fromWeb, 5000)).attrs.type, undefined);
    await gatewayIq({ node: '4', boot, lease: '0' });
    assert.equal((await nextPresence(seller, fromWeb, 5000)).attrs.type, 'unavailable');
  });

  it('a full list in several requests does not make a user of a later request flap', async () => {
    const fromWeb = (x) => x.attrs.from === `dave@${DOMAIN}/web`;
    const boot = newBoot();
    await gatewayIq({ node: '7', boot });
    await webIq('7', boot, [['on', 'dave']]);
    await nextPresence(seller, (x) => fromWeb(x) && !x.attrs.type, 5000);
    // A new full list: the first request names alice only, the second dave.
    await webIq('7', boot, [['on', 'alice']], 'true');
    await webIq('7', boot, [['on', 'dave']], 'false');
    assert.equal(statusOf(await gatewayIq({ node: '7', boot, users: '2', sum: sumOf(['alice', 'dave']) })).attrs.sync, 'ok');
    await assert.rejects(nextPresence(seller, fromWeb, 500), /no matching stanza/, 'dave never went offline');
    // A reset that leaves someone out drops them at the next <gateway>.
    await webIq('7', boot, [['on', 'alice']], 'true');
    assert.equal(statusOf(await gatewayIq({ node: '7', boot, users: '1', sum: sumOf(['alice']) })).attrs.sync, 'ok');
    assert.equal((await nextPresence(seller, fromWeb, 5000)).attrs.type, 'unavailable');
    await gatewayIq({ node: '7', boot, lease: '0' });
  });

  it('an instance whose lease runs out loses its users within the lease', async () => {
    const fromWeb = (x) => x.attrs.from === `dave@${DOMAIN}/web`;
    const boot = newBoot();
    await gatewayIq({ node: '5', boot, lease: '5' });
    await webIq('5', boot, [['on', 'dave']]);
    await nextPresence(seller, (x) => fromWeb(x) && !x.attrs.type, 5000);
    const t0 = Date.now();
    const gone = await nextPresence(seller, fromWeb, 10000);
    assert.equal(gone.attrs.type, 'unavailable');
    assert.ok(Date.now() - t0 >= 3000, 'not before the lease');
  });
});

describe('version 1: acknowledged copies (section 9)', () => {
  it('copies carry seq; an unacknowledged copy comes again, an acknowledged one does not', async () => {
    const boot = newBoot();
    await gatewayIq({ node: '6', boot });
    await seller.send(chat(`alice@${DOMAIN}`, 'ack me', 'k1'));
    const first = await nextMessage(gw, (m) => copyBody(m) === 'ack me', 5000);
    const seq = copySeq(first);
    assert.match(seq, /^\d{1,20}$/);
    const again = await nextMessage(gw, (m) => copyBody(m) === 'ack me', 5000);
    assert.equal(copySeq(again), seq, 'resent with the same seq');
    await acksIq(seq);
    await pause(300); // a resend already on its way when the ack arrived
    await drain((b) => b === 'ack me');
    await within(pause(2500), 5000, 'two resend periods');
    assert.deepEqual(await drain((b) => b === 'ack me'), [], 'not resent after the ack');
  });

  it('ranges acknowledge what they cover, and seqs increase', async () => {
    for (let i = 1; i <= 3; i++) await seller.send(chat(`bob@${DOMAIN}`, `range ${i}`, `r${i}`));
    const seqs = [];
    for (let i = 1; i <= 3; i++) seqs.push(copySeq(await nextMessage(gw, (m) => copyBody(m) === `range ${i}`, 5000)));
    assert.ok(BigInt(seqs[0]) < BigInt(seqs[1]) && BigInt(seqs[1]) < BigInt(seqs[2]));
    await acksIq(`${seqs[0]}-${seqs[2]}`);
    await pause(300);
    await drain((b) => b.startsWith('range '));
    await pause(2500);
    assert.deepEqual(await drain((b) => b.startsWith('range ')), [], 'none resent after the range ack');
  });
});

describe('version 1: send-as once per (sender, id) (section 10)', () => {
  it('a send-as written twice reaches the recipient once', async () => {
    const send = () => gw.send(xml('message', { to: DOMAIN, id: 'outer-1' },
      xml('privilege', { xmlns: 'urn:xmpp:privilege:2' },
        xml('forwarded', { xmlns: 'urn:xmpp:forward:0' },
          xml('message', { xmlns: 'jabber:client', from: `carol@${DOMAIN}/web`, to: `seller7@${DOMAIN}`, id: 'same-id-1', type: 'chat' },
            xml('body', {}, 'only once'))))));
    await send();
    await send();
    await nextMessage(seller, (m) => m.getChildText('body') === 'only once', 5000);
    // A marker sent after the second copy proves nothing else came first.
    await gw.send(xml('message', { to: DOMAIN, id: 'outer-2' },
      xml('privilege', { xmlns: 'urn:xmpp:privilege:2' },
        xml('forwarded', { xmlns: 'urn:xmpp:forward:0' },
          xml('message', { xmlns: 'jabber:client', from: `carol@${DOMAIN}/web`, to: `seller7@${DOMAIN}`, id: 'marker-1', type: 'chat' },
            xml('body', {}, 'marker'))))));
    const next = await nextMessage(seller, (m) => ['only once', 'marker'].includes(m.getChildText('body')), 5000);
    assert.equal(next.getChildText('body'), 'marker', 'the repeated send-as was dropped');
  });
});
