// Issue 10 end to end: nothing accepted is lost when a process dies. Prosody with the
// version-1 companion, PostgreSQL history, the gateway in same-JID mode with a spool
// directory (outbox journal), app users over c2s and browsers over WebSocket.
//
// Each test makes the failure happen at a known point (SIGSTOP freezes the gateway so
// the server writes copies into its socket; SIGKILL then loses them with the socket) and
// checks the end state: every message once in the history, once at the recipient.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startProsody } from '../lib/prosody.mjs';
import { startPostgres } from '../lib/postgres.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until, within } from '../lib/bounded.mjs';
import { login, nextMessage, pendingStanzas, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;

describe('nothing accepted is lost (companion version 1)', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, pg, gw, seller, spool;

  const chat = (to, body, id) => xml('message', { to, type: 'chat', id }, xml('body', {}, body));
  const stored = async (where) => Number(await pg.psql(`SELECT count(*) FROM messages WHERE ${where}`));
  const bodies = async (where) => (await pg.psql(`SELECT body FROM messages WHERE ${where} ORDER BY id`)).split('\n').filter(Boolean);

  /** Every message seller7 received whose body starts with prefix, in arrival order. */
  async function receivedBySeller(prefix, n, ms = 15000) {
    const got = [];
    while (got.length < n) {
      const m = await nextMessage(seller, (x) => (x.getChildText('body') || '').startsWith(prefix), ms);
      got.push(m.getChildText('body'));
    }
    // Anything more that arrives now is a duplicate.
    await new Promise((r) => setTimeout(r, 300));
    const extra = pendingStanzas(seller).filter((x) => x.is('message') && (x.getChildText('body') || '').startsWith(prefix));
    return { got, extra: extra.map((x) => x.getChildText('body')) };
  }

  before(async () => {
    pg = await startPostgres({ db: 'imgw' });
    prosody = await startProsody({
      domain: DOMAIN,
      components: [{ domain: GW, secret: 's3cret' }],
      users: [['seller7', 'pw'], ['buyer1', 'pw'], ['buyer2', 'pw'], ['buyer3', 'pw'], ['buyer4', 'pw'], ['buyer5', 'pw']],
      // Accounts made with prosodyctl before imgw: the companion may adopt them.
      companion: { gateway: GW, adopt: true },
      modules: ['offline'],
      // Short resend timeout and a tiny in-memory backlog, so that resends and the
      // spill to storage happen within a test.
      hostConfig: '  imgw_ack_timeout = 2\n  imgw_ack_backlog = 5',
      logLevel: 'info',
    });
    spool = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-spool-'));
    gw = await startImgw({
      prosody,
      config: { mode: 'samejid', pg_conninfo: `"${pg.connString}"`, spool_dir: spool, companion_lease_s: 6 },
    });
    await until('companion version 1', 10000, () => /companion found on shop\.test \(version 1/.test(gw.logText()), gw.logText);
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(seller);
    if (gw?.pid) { try { process.kill(gw.pid, 'SIGCONT'); } catch { /* gone */ } }
    await gw?.cleanup();
    await prosody?.cleanup();
    await pg?.cleanup();
    if (spool) fs.rmSync(spool, { recursive: true, force: true });
  });

  it('copies a killed gateway had in its socket are sent again and stored once', async () => {
    const N = 20;
    process.kill(gw.pid, 'SIGSTOP'); // the server keeps writing copies into the socket
    try {
      for (let i = 1; i <= N; i++) await seller.send(chat(`buyer1@${DOMAIN}`, `frozen ${i}`, `f${i}`));
      // The server has them once seller7's next stanza is answered (it handles one sender in order).
      await seller.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    } finally {
      await gw.kill(); // SIGKILL: the copies die with the socket, unacknowledged
    }
    assert.equal(await stored("body LIKE 'frozen %'"), 0, 'none stored before the kill');
    await gw.start();
    await until('all copies stored after the restart', 20000, async () => (await stored("body LIKE 'frozen %'")) === N, gw.logText);
    const rows = await bodies("body LIKE 'frozen %'");
    assert.equal(rows.length, N);
    assert.equal(new Set(rows).size, N, 'each once');
    // And a browser recovering from before gets them all, once each.
    const web = await openWs(gw.wsUrl);
    try {
      web.send({ op: 'hello', v: 1, user: 'buyer1', last_id: '1' });
      await web.next((f) => f.op === 'welcome');
      const seen = [];
      while (seen.length < N) seen.push((await web.next((f) => f.op === 'msg' && f.body.startsWith('frozen '), 10000)).body);
      assert.equal(new Set(seen).size, N);
    } finally {
      await web.close();
    }
  });

  it('sends accepted while the server was down survive a SIGKILL of the gateway: delivered once after restart', async () => {
    const web = await openWs(gw.wsUrl);
    assert.equal((await web.hello('buyer2')).op, 'welcome');
    await stopAll(seller);
    await prosody.stop();
    await gw.waitLink('down', 10000);
    const N = 10;
    for (let i = 1; i <= N; i++) web.send({ op: 'send', to: 'seller7', body: `queued ${i}`, cid: `q${i}` });
    for (let i = 1; i <= N; i++) {
      const ack = await web.next((f) => f.op === 'ack' && f.cid === `q${i}`);
      assert.equal(ack.queued, true);
    }
    await gw.kill();
    await within(web.closed, 5000, 'browser sees the kill');
    await prosody.start();
    seller = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'seller7', password: 'pw', resource: 'phone' });
    await gw.start();
    const { got, extra } = await receivedBySeller('queued ', N);
    assert.deepEqual(got, Array.from({ length: N }, (_, i) => `queued ${i + 1}`), 'all, in order');
    assert.deepEqual(extra, [], 'none twice');
    assert.equal(await stored("body LIKE 'queued %'"), N, 'each once in the history');
  });

  it('SIGTERM waits until accepted sends are routed: none lost, none twice', async () => {
    const web = await openWs(gw.wsUrl);
    assert.equal((await web.hello('buyer3')).op, 'welcome');
    const N = 50;
    for (let i = 1; i <= N; i++) web.send({ op: 'send', to: 'seller7', body: `drain ${i}`, cid: `d${i}` });
    for (let i = 1; i <= N; i++) await web.next((f) => f.op === 'ack' && f.cid === `d${i}`);
    const r = await gw.stop('SIGTERM');
    assert.equal(r.code, 0);
    const { got, extra } = await receivedBySeller('drain ', N);
    assert.equal(got.length, N);
    assert.deepEqual(extra, []);
    // Nothing was left for the next start.
    const left = fs.existsSync(path.join(spool, 'outbox'))
      ? fs.readdirSync(path.join(spool, 'outbox')).filter((f) => fs.statSync(path.join(spool, 'outbox', f)).size > 0)
      : [];
    assert.deepEqual(left, [], 'outbox journal empty after a drained shutdown');
    await gw.start();
  });

  it('sends killed mid-flight are delivered once: the companion drops what it routed already', async () => {
    const web = await openWs(gw.wsUrl);
    assert.equal((await web.hello('buyer4')).op, 'welcome');
    const N = 30;
    for (let i = 1; i <= N; i++) web.send({ op: 'send', to: 'seller7', body: `midflight ${i}`, cid: `m${i}` });
    for (let i = 1; i <= N; i++) await web.next((f) => f.op === 'ack' && f.cid === `m${i}`);
    await gw.kill(); // some routed, maybe not all confirmed: the next start writes those again
    await gw.start();
    const { got, extra } = await receivedBySeller('midflight ', N);
    assert.equal(new Set(got).size, N, 'every one');
    assert.deepEqual(extra, [], 'none twice');
  });

  it('copies made while no gateway is connected are kept (past the backlog, in storage) and stored on return', async () => {
    const N = 12; // backlog 5: most of them go to the companion's storage
    await gw.stop('SIGTERM');
    for (let i = 1; i <= N; i++) await seller.send(chat(`buyer5@${DOMAIN}`, `away ${i}`, `a${i}`));
    await seller.iqCaller.request(xml('iq', { type: 'get', to: DOMAIN }, xml('ping', { xmlns: 'urn:xmpp:ping' })), 5000);
    await gw.start();
    await until('all kept copies stored', 30000, async () => (await stored("body LIKE 'away %'")) === N, gw.logText);
    assert.equal(new Set(await bodies("body LIKE 'away %'")).size, N);
  });
});
