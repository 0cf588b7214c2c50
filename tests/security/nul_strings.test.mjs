// Issue 9 item 8: JSON strings are read with their length and a NUL inside one is refused,
// and user ids are never case-folded into someone else's identity.
//
// As found: a valid ticket followed by "\u0000junk" was accepted, and a send to
// "app1\u0000@evil.example" went to app1 (json-c keeps the NUL, C strings stopped there);
// a hello as ALICE logged in as alice. Real Prosody and the gateway (component mode, with
// tickets); an app user over c2s proves what was (not) delivered.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, nextMessage, stopAll } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const TICKET_SECRET = 'nul-test-ticket-secret-0123456789';

function ticket(user, ttlS = 600) {
  const payload = `${user}:${Math.floor(Date.now() / 1000) + ttlS}`;
  return `${payload}:${crypto.createHmac('sha256', TICKET_SECRET).update(payload).digest('hex')}`;
}

describe('strings with NUL and user id case', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, app1;

  before(async () => {
    prosody = await startProsody({
      domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], users: [['app1', 'pw']], logLevel: 'info',
    });
    gw = await startImgw({ prosody, config: { dev_mode: 'no', ticket_secret: TICKET_SECRET } });
    app1 = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(app1);
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  async function session(hello) {
    const ws = await openWs(gw.wsUrl);
    ws.send(hello);
    const first = await ws.next((f) => f.op === 'welcome' || f.op === 'error');
    return { ws, first };
  }

  it('accepts a plain ticket (the control case)', async () => {
    const { ws, first } = await session({ op: 'hello', v: 1, ticket: ticket('alice') });
    assert.equal(first.op, 'welcome');
    assert.equal(first.user, 'alice');
    await ws.close();
  });

  it('refuses a valid ticket followed by \\u0000junk', async () => {
    const { ws, first } = await session({ op: 'hello', v: 1, ticket: `${ticket('alice')}\u0000junk` });
    assert.equal(first.op, 'error');
    assert.equal(first.code, 'bad_hello');
    assert.equal((await ws.closed).code, 4401);
  });

  it('refuses a send to "app1\\u0000@evil.example" and delivers nothing to app1', async () => {
    const { ws, first } = await session({ op: 'hello', v: 1, ticket: ticket('bob') });
    assert.equal(first.op, 'welcome');
    ws.send({ op: 'send', to: 'app1\u0000@evil.example', body: 'smuggled', cid: 'n1' });
    const err = await ws.next((f) => f.op === 'error' || f.op === 'ack');
    assert.equal(err.op, 'error');
    assert.equal(err.code, 'bad_frame');
    assert.equal(err.cid, 'n1');
    // Nothing reached app1: the next message it gets is this marker.
    ws.send({ op: 'send', to: `app1@${DOMAIN}`, body: 'marker', cid: 'n2' });
    assert.equal((await ws.next((f) => f.op === 'ack')).cid, 'n2');
    const m = await nextMessage(app1, () => true, 5000);
    assert.equal(m.getChildText('body'), 'marker');
    // The same trick in every other string member.
    for (const frame of [
      { op: 'send', to: `app1@${DOMAIN}`, body: 'x', cid: 'c\u0000d' },
      { op: 'send', to: `app1@${DOMAIN}`, body: 'x\u0000y', cid: 'n3' },
      { op: 'send', to: `app1@${DOMAIN}`, body: 'x', cid: 'n4', kind: 'text\u0000' },
      { op: 'open', with: 'app1\u0000@evil.example' },
      { op: 'history', with: 'app1\u0000@evil.example' },
      { op: 'read', with: `app1@${DOMAIN}`, id: '5\u0000' },
      { op: 'ch\u0000ats' },
    ]) {
      ws.send(frame);
      const e = await ws.next((f) => f.op === 'error' || f.op === 'ack' || f.op === 'opened' || f.op === 'history' || f.op === 'chats' || f.op === 'read');
      assert.equal(e.op, 'error', `${JSON.stringify(frame)} answered ${JSON.stringify(e)}`);
    }
    await ws.close();
  });

  it('refuses ALICE (ticket or development hello) instead of folding it into alice', async () => {
    const { ws, first } = await session({ op: 'hello', v: 1, ticket: ticket('ALICE') });
    assert.equal(first.op, 'error');
    assert.equal(first.code, 'bad_ticket');
    assert.match(first.reason, /lower case/);
    assert.equal((await ws.closed).code, 4401);
    const mixed = await session({ op: 'hello', v: 1, ticket: ticket('Alice') });
    assert.equal(mixed.first.code, 'bad_ticket');
    await mixed.ws.closed;
  });

  it('still folds case in addresses: "to": "APP1" reaches app1@shop.test', async () => {
    const { ws, first } = await session({ op: 'hello', v: 1, ticket: ticket('carol') });
    assert.equal(first.op, 'welcome');
    ws.send({ op: 'send', to: `APP1@${DOMAIN.toUpperCase()}`, body: 'case', cid: 'k1' });
    assert.equal((await ws.next((f) => f.op === 'ack' || f.op === 'error')).op, 'ack');
    const m = await nextMessage(app1, (x) => x.getChildText('body') === 'case', 5000);
    assert.equal(m.attrs.to, `app1@${DOMAIN}`);
    await ws.close();
  });
});

describe('development hello and user id case', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let gw;
  before(async () => { gw = await startImgw({ config: { dev_mode: 'yes' }, waitLinkUp: false }); });
  after(async () => { await gw?.cleanup(); });

  it('refuses "ALICE" and "alice\\u0000" in a development hello', async () => {
    for (const user of ['ALICE', 'alice\u0000']) {
      const ws = await openWs(gw.wsUrl);
      const f = await ws.hello(user);
      assert.equal(f.op, 'error', `${JSON.stringify(user)}: ${JSON.stringify(f)}`);
      assert.equal(f.code, 'bad_hello');
      assert.equal((await ws.closed).code, 4401);
    }
  });
});
