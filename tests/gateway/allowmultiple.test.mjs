// Several gateways on one component domain, as Openfire runs them with allowMultiple: the
// server deals every stanza for the domain round-robin over the connections, IQ results
// included (Openfire's RoutableComponents rotates its list for each packet). Prosody cannot
// do that, so a scripted XEP-0114 server plays Openfire here and answers every request of
// one gateway on the other gateway's connection: the gateway that receives an answer that
// is not its own must pass it on (through the Redis relay), or same-JID logins that need a
// registration would time out.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startRedis } from '../lib/redis.mjs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until, within } from '../lib/bounded.mjs';

const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;

/** The scripted server: accepts component connections, answers IQs on another connection. */
async function crossServer() {
  const conns = [];
  const seen = { registrations: 0, answeredElsewhere: 0, heartbeats: 0 };
  const srv = net.createServer((s) => {
    s.buf = '';
    s.on('error', () => {});
    s.on('close', () => { const i = conns.indexOf(s); if (i >= 0) conns.splice(i, 1); });
    s.on('data', (d) => {
      s.buf += d.toString();
      if (!s.opened && s.buf.includes('<stream:stream')) {
        s.opened = true;
        s.write("<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' "
          + `xmlns='jabber:component:accept' id='sid${conns.length}' from='${GW}'>`);
      }
      if (!s.up && s.buf.includes('</handshake>')) {
        s.up = true;
        s.buf = s.buf.slice(s.buf.indexOf('</handshake>') + 12);
        conns.push(s);
        s.write('<handshake/>');
      }
      if (!s.up) return;
      // Whole IQ stanzas in the buffer: answer each on the next other connection.
      for (;;) {
        const m = /<iq\b([^>]*?)(\/>|>([\s\S]*?)<\/iq>)/.exec(s.buf);
        if (!m) break;
        s.buf = s.buf.slice(m.index + m[0].length);
        const id = /\bid=['"]([^'"]+)['"]/.exec(m[1])?.[1];
        const type = /\btype=['"]([^'"]+)['"]/.exec(m[1])?.[1];
        if (!id || (type !== 'get' && type !== 'set')) continue;
        const others = conns.filter((c) => c !== s);
        const target = others.length ? others[seen.answeredElsewhere++ % others.length] : s;
        const inner = m[3] || '';
        let payload = '';
        if (inner.includes('disco#info')) {
          payload = "<query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:imgw:companion:0'/>"
            + "<feature var='urn:imgw:companion:1'/></query>";
        } else if (/<gateway\b/.test(inner)) {
          // Version 1 heartbeat: the status names the instance and echoes its mark.
          const a = (k) => new RegExp(`\\b${k}=['"]([^'"]*)['"]`).exec(inner)?.[1];
          seen.heartbeats++;
          payload = `<status xmlns='urn:imgw:companion:1' node='${a('node')}' boot='${a('boot')}' mark='${a('mark')}' sync='ok'/>`;
        } else if (inner.includes("action='create'") || inner.includes('action="create"')) {
          seen.registrations++;
          payload = "<user xmlns='urn:imgw:companion:0' status='created'/>";
        }
        target.write(`<iq type='result' id='${id}' from='${DOMAIN}' to='${GW}'>${payload}</iq>`);
      }
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return { srv, conns, seen, port: srv.address().port };
}

describe('two gateways on one domain with answers dealt round-robin', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let server, redis, gwA, gwB;

  before(async () => {
    server = await crossServer();
    redis = await startRedis();
    const common = {
      mode: 'samejid', allow_multiple: 'yes', redis_host: '127.0.0.1', redis_port: redis.port,
      handshake_timeout_ms: 8000,
    };
    const fakeXmpp = { componentPort: server.port, domain: DOMAIN };
    gwA = await startImgw({ prosody: fakeXmpp, config: { ...common, node_id: 0 } });
    gwB = await startImgw({ prosody: fakeXmpp, config: { ...common, node_id: 1 } });
    for (const g of [gwA, gwB]) {
      await until('relay up', 10000, () => /relay.*subscriber\): up/.test(g.logText()) && /relay.*command\): up/.test(g.logText()), g.logText);
    }
    await until('both connected to the server', 5000, () => server.conns.length === 2);
  });

  after(async () => {
    await gwA?.cleanup();
    await gwB?.cleanup();
    await redis?.cleanup();
    server?.srv.close();
    for (const c of server?.conns ?? []) c.destroy();
  });

  it('a first login on either gateway is welcomed although the registration answer reaches the other', async () => {
    for (const [gw, user] of [[gwA, 'newa1'], [gwB, 'newb1'], [gwA, 'newa2'], [gwB, 'newb2']]) {
      const t = await openWs(gw.wsUrl);
      try {
        const t0 = Date.now();
        const w = await within(t.hello(user), 6000, `welcome of ${user}`, gw.logText);
        assert.equal(w.op, 'welcome', JSON.stringify(w));
        assert.ok(Date.now() - t0 < 5000, `welcomed after ${Date.now() - t0} ms (not by a timeout)`);
      } finally {
        await t.close();
      }
    }
    assert.equal(server.seen.registrations, 4);
  });

  it('sends are confirmed although every status reaches the other gateway', async () => {
    const outbox = async (gw) => Number(/^imgw_outbox (\d+)$/m.exec(await (await fetch(`${gw.httpUrl}/metrics`)).text())[1]);
    for (const [gw, user] of [[gwA, 'senda'], [gwB, 'sendb']]) {
      const t = await openWs(gw.wsUrl);
      try {
        assert.equal((await t.hello(user)).op, 'welcome');
        for (let i = 1; i <= 5; i++) t.send({ op: 'send', to: 'app1', body: `m${i}`, cid: `c${i}` });
        for (let i = 1; i <= 5; i++) await t.next((f) => f.op === 'ack' && f.cid === `c${i}`);
        await until(`outbox of ${user}'s gateway empty`, 8000, async () => (await outbox(gw)) === 0, gw.logText);
      } finally {
        await t.close();
      }
    }
    assert.ok(server.seen.heartbeats > 0);
  });
});
