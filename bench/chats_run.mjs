// Chat-list latency through the gateway, with and without Redis, in one run:
// a private PostgreSQL with a generated history (USERS users, each in PEERS
// conversations), Redis, Prosody and two gateways (one with redis_host set,
// one without); one WebSocket client asks {"op":"chats"} REQUESTS times for
// random users and measures request → answer.
//
//   node bench/chats_run.mjs [--users 2000] [--peers 50] [--requests 3000]
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { startRedis } from '../tests/lib/redis.mjs';
import { startProsody } from '../tests/lib/prosody.mjs';
import { startImgw } from '../tests/lib/imgw.mjs';
import { openWs } from '../tests/lib/wsclient.mjs';

const opts = { users: 2000, peers: 50, requests: 3000 };
for (let i = 2; i < process.argv.length; i += 2) opts[process.argv[i].replace(/^--/, '')] = Number(process.argv[i + 1]);
const DOMAIN = 'shop.test';
const GW = `gw.${DOMAIN}`;

const pg = await startPostgres({ db: 'imgw', settings: { shared_buffers: '1GB' } });
const redis = await startRedis();
const prosody = await startProsody({ domain: DOMAIN, components: [{ domain: GW, secret: 's3cret' }], logLevel: 'warn' });
const stop = [];
try {
  const plain = await startImgw({ prosody, config: { pg_conninfo: `"${pg.connString}"`, log_level: 'warning' } });
  stop.push(plain);
  // Each user u talks to PEERS peers; 4 messages per conversation.
  await pg.psql(`INSERT INTO messages (id, sender, recipient, body, kind, stanza_id, created_at)
    SELECT row_number() OVER (), s, r, 'message ' || k || ' between ' || s || ' and ' || r, 'text',
           'gen-' || row_number() OVER (), now() - (k || ' seconds')::interval
    FROM generate_series(0, ${opts.users - 1}) u,
         generate_series(1, ${opts.peers}) p,
         generate_series(1, 4) k,
         LATERAL (SELECT 'u' || u || '@${GW}' AS a, 'u' || ((u + p * 7) % ${opts.users}) || '@${GW}' AS b) j,
         LATERAL (SELECT CASE WHEN k % 2 = 0 THEN j.a ELSE j.b END AS s, CASE WHEN k % 2 = 0 THEN j.b ELSE j.a END AS r) d
    WHERE j.a <> j.b`, { timeoutMs: 0 });
  await pg.psql('ANALYZE');
  const cached = await startImgw({ prosody, componentDomain: GW, config: { pg_conninfo: `"${pg.connString}"`, redis_host: '127.0.0.1', redis_port: redis.port, log_level: 'warning', pg_migrate: 'no', node_id: 1 }, waitLinkUp: false });
  stop.push(cached);
  const measure = async (gw, label) => {
    const t = await openWs(gw.wsUrl);
    await t.hello('bench');
    const lat = [];
    // Warm-up pass (fills Redis for the cached gateway), then the measured pass.
    for (const pass of [0, 1]) {
      for (let i = 0; i < opts.requests; i++) {
        const user = `u${(i * 7919) % opts.users}`;
        const w = await openWsOnce(gw, user);
        const t0 = performance.now();
        w.send({ op: 'chats', limit: 50 });
        await w.next((f) => f.op === 'chats', 10000);
        if (pass) lat.push(performance.now() - t0);
        w.ws.close();
      }
    }
    await t.close();
    lat.sort((a, b) => a - b);
    return { label, n: lat.length, p50: lat[Math.floor(lat.length * 0.5)], p99: lat[Math.floor(lat.length * 0.99)] };
  };
  // One session per user (a chat list is always the asking user's own).
  const sockets = new Map();
  async function openWsOnce(gw, user) {
    const key = `${gw.port}/${user}`;
    if (!sockets.has(key)) {
      const w = await openWs(gw.wsUrl);
      await w.hello(user);
      w.ws.close = () => {};
      sockets.set(key, w);
    }
    return sockets.get(key);
  }
  const a = await measure(plain, 'PostgreSQL only');
  const b = await measure(cached, 'Redis, PostgreSQL on a miss');
  console.log(`chat-list latency, ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length} × ${os.cpus()[0].model}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`);
  console.log(`command: node bench/chats_run.mjs --users ${opts.users} --peers ${opts.peers} --requests ${opts.requests}`);
  console.log(`history: ${(await pg.psql('SELECT count(*) FROM messages')).trim()} messages, ${(await pg.psql('SELECT count(*) FROM conversation_state')).trim()} chat-list rows\n`);
  console.log('| path | requests | p50 ms | p99 ms |\n|---|---|---|---|');
  for (const r of [a, b]) console.log(`| ${r.label} | ${r.n} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} |`);
  console.log(`\nratio p50: ${(a.p50 / b.p50).toFixed(2)}×`);
  for (const w of sockets.values()) w.ws.terminate();
} finally {
  for (const g of stop) await g.cleanup().catch(() => {});
  await prosody.cleanup();
  await redis.cleanup();
  await pg.cleanup();
}
