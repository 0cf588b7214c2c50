// SIGHUP reload end to end: a real gateway (tickets, no dev mode) on a real Prosody; the
// config file is rewritten and the process gets SIGHUP. What can change does (log level,
// allowed origins, the ticket secret with an overlap window), what cannot is logged by
// name, open sessions keep working, and a bad file changes nothing.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import { startProsody } from '../lib/prosody.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { until } from '../lib/bounded.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { login, nextMessage, stopAll, xml } from '../lib/xmpp.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;
const SECRET = 's3cret';
const OLD = 'reload-test-secret-old-0123456789';
const NEW = 'reload-test-secret-new-0123456789';
const ticket = (user, secret, exp = Math.floor(Date.now() / 1000) + 600) =>
  `${user}:${exp}:${createHmac('sha256', secret).update(`${user}:${exp}`).digest('hex')}`;

describe('SIGHUP reload', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let prosody, gw, app;
  let reloads = 0;

  /** Rewrites the config file with changes (null removes a key) and waits for the reload's outcome. */
  async function reload(changes, outcome = /reload done/) {
    const settings = { ...gw.settings };
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) delete settings[k];
      else settings[k] = v;
    }
    fs.writeFileSync(gw.confPath, Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n') + '\n');
    const before = gw.logText().split('SIGHUP: reloading').length;
    process.kill(gw.pid, 'SIGHUP');
    reloads++;
    await until('reload outcome in the log', 10000, () => {
      const log = gw.logText();
      return log.split('SIGHUP: reloading').length > before && /reload (done|refused)/.test(log.slice(log.lastIndexOf('SIGHUP: reloading')));
    }, gw.logText);
    const log = gw.logText();
    const last = log.slice(log.lastIndexOf('SIGHUP: reloading'));
    assert.match(last, outcome);
    return last;
  }

  const metric = async (name) => {
    const text = await (await fetch(`${gw.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
    return m ? Number(m[1]) : undefined;
  };

  before(async () => {
    prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: SECRET }], users: [['app1', 'pw']], logLevel: 'info' });
    gw = await startImgw({
      prosody,
      config: { dev_mode: 'no', ticket_secret: OLD, ticket_secret_overlap_s: 3600, allow_no_origin: 'no' },
    });
    app = await login({ port: prosody.c2sPort, domain: DOMAIN, username: 'app1', password: 'pw', resource: 'phone' });
  });

  after(async () => {
    await stopAll(app);
    await gw?.cleanup();
    await prosody?.cleanup();
  });

  it('applies log level, origins and a new ticket secret; open sessions keep working', async () => {
    const origin1 = `http://127.0.0.1:${gw.port}`;
    const t = await openWs(gw.wsUrl, { origin: origin1 });
    assert.equal((await t.hello({ ticket: ticket('ann', OLD) })).op, 'welcome');
    // Before: the new origin is refused, the new secret's tickets too, no debug lines.
    await assert.rejects(openWs(gw.wsUrl, { origin: 'https://new.example' }), (err) => err.status === 403);
    const pre = await openWs(gw.wsUrl, { origin: origin1 });
    assert.equal((await pre.hello({ ticket: ticket('bea', NEW) })).code, 'bad_ticket');
    assert.doesNotMatch(gw.logText(), / debug /);

    const log = await reload({
      log_level: 'debug',
      allowed_origins: `https://new.example, ${origin1}`,
      ticket_secret: NEW,
      listen_port: gw.port + 1, // needs a restart: logged, not applied
    });
    assert.match(log, /'log_level' info -> debug/);
    assert.match(log, /'allowed_origins' .* -> https:\/\/new\.example/);
    assert.match(log, /'ticket_secret' \*+ -> \*+/);
    assert.match(log, /'listen_port' changed .* needs a restart/);
    assert.doesNotMatch(log, new RegExp(OLD + '|' + NEW), 'secrets never appear in the log');

    // The session opened before the reload still works both ways.
    t.send({ op: 'send', to: `app1@${DOMAIN}`, body: 'after reload', cid: 'r1' });
    assert.equal((await t.next((f) => f.op === 'ack')).cid, 'r1');
    const got = await nextMessage(app, (m) => m.getChildText('body') === 'after reload');
    assert.equal(got.attrs.from, `ann@${GW}`);
    await app.send(xml('message', { to: `ann@${GW}`, type: 'chat', id: 'back1' }, xml('body', {}, 'still here')));
    assert.equal((await t.next((f) => f.op === 'msg')).body, 'still here');

    // After: the new origin is accepted, both secrets' tickets pass (overlap), debug is on.
    const n = await openWs(gw.wsUrl, { origin: 'https://new.example' });
    assert.equal((await n.hello({ ticket: ticket('bea', NEW) })).op, 'welcome');
    const o = await openWs(gw.wsUrl, { origin: origin1 });
    assert.equal((await o.hello({ ticket: ticket('cid', OLD) })).op, 'welcome');
    await until('a debug line', 5000, () => / debug +router /.test(gw.logText()), gw.logText);
    assert.equal((await gw.health()).sessions, 3);
    assert.equal(await metric('imgw_reloads_total'), 1);
    for (const c of [t, pre, n, o]) await c.close();
  });

  it('stops accepting the previous secret when its overlap window ends', async () => {
    // Rotate again with a 1 s window: NEW becomes the previous secret.
    const third = 'reload-test-secret-3rd-0123456789';
    await reload({ ticket_secret: third, ticket_secret_overlap_s: 1 });
    gw.settings.ticket_secret = third;
    const origin = `http://127.0.0.1:${gw.port}`;
    await until('the previous secret refused', 10000, async () => {
      const c = await openWs(gw.wsUrl, { origin });
      const r = await c.hello({ ticket: ticket('dan', NEW) });
      await c.close();
      return r.code === 'bad_ticket';
    }, gw.logText, 200);
    const c = await openWs(gw.wsUrl, { origin });
    assert.equal((await c.hello({ ticket: ticket('dan', third) })).op, 'welcome');
    await c.close();
  });

  it('refuses a bad file whole: nothing changes, sessions survive, the reason is logged', async () => {
    const origin = `http://127.0.0.1:${gw.port}`;
    const t = await openWs(gw.wsUrl, { origin });
    assert.equal((await t.hello({ ticket: ticket('eve', gw.settings.ticket_secret) })).op, 'welcome');
    const log = await reload({ log_level: 'error', allowed_origins: 'https://other.example', max_sessions: 'lots' }, /reload refused/);
    assert.match(log, /max_sessions/);
    // Still debug (the bad file's log_level did not apply), the old origin still passes.
    await assert.rejects(openWs(gw.wsUrl, { origin: 'https://other.example' }), (err) => err.status === 403);
    const c = await openWs(gw.wsUrl, { origin });
    assert.equal((await c.hello({ ticket: ticket('fay', gw.settings.ticket_secret) })).op, 'welcome');
    t.send({ op: 'ping', t: 1 });
    assert.equal((await t.next((f) => f.op === 'pong')).op, 'pong');
    assert.equal(await metric('imgw_reload_failures_total'), 1);
    assert.equal(await metric('imgw_reloads_total'), reloads - 1);
    assert.equal((await gw.health()).link, 'up');
    await t.close();
    await c.close();
  });
});
