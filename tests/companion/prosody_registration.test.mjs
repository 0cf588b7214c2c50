// mod_imgw_companion registration ownership (companion protocol section 1) against a real
// Prosody: the companion manages only accounts it created (or adopted, when
// imgw_adopt_existing_accounts is on), and never an administrator's. A raw XEP-0114
// component plays the gateway; real c2s logins prove which passwords still work.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { startProsody } from '../lib/prosody.mjs';
import { connectComponent, iqError, login, stopAll, xml } from '../lib/xmpp.mjs';

const NS = 'urn:imgw:companion:0';
const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const WAIT = 5000;
const el = (name, text) => xml(name, {}, text);

async function startWith(adopt) {
  const p = await startProsody({
    domain: DOMAIN,
    components: [{ domain: GW, secret: 's3cret' }],
    // Accounts that exist before imgw: an administrator and an ordinary one.
    users: [['admin', 'admin-pw'], ['legacy', 'legacy-pw']],
    companion: { gateway: GW },
    extraConfig: `admins = { "admin@${DOMAIN}", "future@${DOMAIN}" }`,
    hostConfig: adopt ? '  imgw_adopt_existing_accounts = true' : '',
    logLevel: 'info',
  });
  const gw = await connectComponent({ port: p.componentPort, domain: GW, secret: 's3cret' });
  return { p, gw };
}

function userIq(gw, action, ...children) {
  return gw.iqCaller.request(xml('iq', { type: 'set', to: DOMAIN }, xml('user', { xmlns: NS, action }, ...children)), WAIT);
}

/** The status of a registration result (<user status='…'/>). */
async function status(request) {
  const res = await request;
  const user = res.is('user') ? res : res.getChild('user', NS);
  assert.ok(user, `a result with <user/>: ${res}`);
  return user.attrs.status;
}

async function canLogin(p, username, password) {
  try {
    const c = await login({ port: p.c2sPort, domain: DOMAIN, username, password, presence: false });
    await stopAll(c);
    return true;
  } catch {
    return false;
  }
}

describe('registration: only accounts imgw manages', () => {
  let p, gw;
  before(async () => { ({ p, gw } = await startWith(false)); });
  after(async () => {
    await stopAll(gw);
    if (p) {
      const errors = p.stderrText();
      await p.cleanup();
      assert.equal(errors.trim(), '', `Prosody logged errors:\n${errors}`);
    }
  });

  it('answers created, then exists (changing nothing), for an account it creates', async () => {
    assert.equal(await status(userIq(gw, 'create', el('username', 'fresh'), el('password', 'one'))), 'created');
    assert.equal(await status(userIq(gw, 'create', el('username', 'fresh'), el('password', 'two'))), 'exists');
    assert.ok(await canLogin(p, 'fresh', 'one'), 'the first password stands');
    assert.equal(await status(userIq(gw, 'update', el('username', 'fresh'), el('password', 'three'))), 'updated');
    assert.ok(await canLogin(p, 'fresh', 'three'));
    assert.equal(await status(userIq(gw, 'delete', el('username', 'fresh'))), 'deleted');
    assert.equal(await canLogin(p, 'fresh', 'three'), false);
  });

  it('refuses to create, update or delete an account it did not create (adoption off)', async () => {
    assert.deepEqual(await iqError(userIq(gw, 'create', el('username', 'legacy'))), { condition: 'conflict', type: 'cancel' });
    assert.deepEqual(await iqError(userIq(gw, 'update', el('username', 'legacy'), el('password', 'stolen'))),
      { condition: 'not-allowed', type: 'cancel' });
    assert.deepEqual(await iqError(userIq(gw, 'delete', el('username', 'legacy'))), { condition: 'not-allowed', type: 'cancel' });
    assert.ok(await canLogin(p, 'legacy', 'legacy-pw'), 'untouched');
  });

  it('never touches an administrator, existing or not yet created', async () => {
    for (const action of ['create', 'update', 'delete']) {
      for (const name of ['admin', 'Admin', 'future']) {
        assert.deepEqual(await iqError(userIq(gw, action, el('username', name), el('password', 'stolen'))),
          { condition: 'not-allowed', type: 'cancel' }, `${action} ${name}`);
      }
    }
    assert.ok(await canLogin(p, 'admin', 'admin-pw'));
    assert.equal(await canLogin(p, 'future', 'stolen'), false, 'an admin-listed name is not created');
  });
});

describe('registration: adoption when configured', () => {
  let p, gw;
  before(async () => { ({ p, gw } = await startWith(true)); });
  after(async () => {
    await stopAll(gw);
    await p?.cleanup();
  });

  it('adopts a pre-existing account, which is then managed; never an administrator', async () => {
    assert.equal(await status(userIq(gw, 'create', el('username', 'legacy'), el('password', 'x'))), 'adopted');
    assert.ok(await canLogin(p, 'legacy', 'legacy-pw'), 'adopting changes nothing');
    assert.equal(await status(userIq(gw, 'create', el('username', 'legacy'))), 'exists');
    assert.equal(await status(userIq(gw, 'update', el('username', 'legacy'), el('password', 'new-pw'))), 'updated');
    assert.ok(await canLogin(p, 'legacy', 'new-pw'));
    assert.deepEqual(await iqError(userIq(gw, 'create', el('username', 'admin'))), { condition: 'not-allowed', type: 'cancel' });
    assert.ok(await canLogin(p, 'admin', 'admin-pw'));
  });
});
