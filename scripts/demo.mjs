// Starts the local demo: Prosody, PostgreSQL and Redis on private loopback ports and
// the gateway on 127.0.0.1:8480 (IMGW_DEMO_PORT) in development mode, where the demo
// page lets you sign in as any user. Two app users, app1/pw and app2/pw, exist on
// Prosody for trying an XMPP client against the same chat. Ctrl-C stops everything.
import { startProsody } from '../tests/lib/prosody.mjs';
import { startPostgres } from '../tests/lib/postgres.mjs';
import { startRedis } from '../tests/lib/redis.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startImgw } from '../tests/lib/imgw.mjs';

const port = Number(process.env.IMGW_DEMO_PORT || 8480);
const domain = 'shop.test';
const stoppers = [];
let stopping = false;

async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const stop of stoppers.reverse()) await stop().catch(() => {});
  process.exit(code);
}
process.on('SIGINT', () => stopAll(0));
process.on('SIGTERM', () => stopAll(0));

try {
  const prosody = await startProsody({
    domain,
    components: [{ domain: `gw.${domain}`, secret: 'demo-secret' }],
    users: [['app1', 'pw'], ['app2', 'pw']],
    companion: { gateway: `gw.${domain}` },
    modules: ['offline'],
    logLevel: 'info',
  });
  stoppers.push(() => prosody.cleanup());
  const pg = await startPostgres({ db: 'imgw' });
  stoppers.push(() => pg.cleanup());
  const redis = await startRedis();
  stoppers.push(() => redis.cleanup());
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'imgw-demo-'));
  stoppers.push(async () => fs.rmSync(data, { recursive: true, force: true }));
  const gw = await startImgw({
    prosody,
    secret: 'demo-secret',
    config: {
      mode: 'samejid',
      pg_conninfo: `"${pg.connString}"`,
      redis_host: '127.0.0.1',
      redis_port: redis.port,
      spool_dir: path.join(data, 'spool'),
      upload_dir: path.join(data, 'uploads'),
      listen_port: port,
      allowed_origins: `http://127.0.0.1:${port}, http://localhost:${port}`,
      log_level: 'info',
    },
  });
  stoppers.push(() => gw.cleanup());
  console.log(`
imgw demo is running.

  Demo page:     http://127.0.0.1:${port}/demo/   (sign in as any user, e.g. two tabs as alice and bob, or as app1)
  Health:        http://127.0.0.1:${port}/health
  Prosody c2s:   127.0.0.1:${prosody.c2sPort}  domain ${domain}  users app1/pw, app2/pw
  PostgreSQL:    ${pg.url}
  Redis:         ${redis.url}
  Gateway log:   ${gw.dir}/imgw.log
  Restart the gateway alone (history stays): kill the imgw process; the demo starts it again.

Press Ctrl-C to stop.`);
  // Bring the gateway back if it stops (e.g. killed to try a restart): history is in PostgreSQL.
  setInterval(async () => {
    if (stopping || gw.pid === undefined) return;
    try {
      process.kill(gw.pid, 0);
    } catch {
      console.log('gateway stopped; starting it again');
      await gw.start().catch((err) => console.error(`restart failed: ${err.message}`));
    }
  }, 1000).unref();
} catch (err) {
  console.error(`demo failed to start: ${err.message}`);
  await stopAll(1);
}
