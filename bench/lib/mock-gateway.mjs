#!/usr/bin/env node
// A stand-in for the imgw binary, for checking the benchmark harness itself before a
// gateway build exists: `node bench/run.mjs --mode imgw --gateway bench/lib/mock-gateway.mjs`.
// It speaks just enough of docs/protocol.md (dev-mode hello, welcome, msg) and links to
// Prosody as an XEP-0114 component with @xmpp/component. Its figures mean nothing about
// imgw; never report them.

import fs from 'node:fs';
import { component, xml } from '@xmpp/component';
import { WebSocketServer } from 'ws';

const file = process.argv[process.argv.indexOf('--config') + 1];
const conf = Object.fromEntries(fs.readFileSync(file, 'utf8').split('\n')
  .filter((l) => l.includes('=') && !l.startsWith('#'))
  .map((l) => [l.slice(0, l.indexOf('=')).trim(), l.slice(l.indexOf('=') + 1).trim()]));

/** user id -> Set of sockets */
const users = new Map();
let nextId = 1;

const xmpp = component({
  service: `xmpp://${conf.xmpp_host}:${conf.xmpp_port}`,
  domain: conf.component_domain,
  password: conf.component_secret,
});
xmpp.on('error', (err) => console.error('component:', err.message));
xmpp.on('stanza', (st) => {
  if (!st.is('message')) return;
  const to = String(st.attrs.to || '');
  const user = to.slice(0, to.indexOf('@'));
  const body = st.getChildText('body');
  const set = users.get(user);
  if (!set || body === null) return;
  const from = String(st.attrs.from || '').split('/')[0];
  const frame = JSON.stringify({
    op: 'msg', id: String(nextId++), conv: from, from, to: `${user}@${conf.component_domain}`,
    body, kind: 'text', ts: Date.now(), open: false,
  });
  for (const ws of set) ws.send(frame);
});
await xmpp.start();
void xml;

const wss = new WebSocketServer({ host: conf.listen_host, port: Number(conf.listen_port), path: '/ws' });
wss.on('connection', (ws) => {
  let user = null;
  ws.on('message', (data) => {
    let m;
    try { m = JSON.parse(data.toString()); } catch { return; }
    if (m.op === 'hello' && !user && typeof m.user === 'string') {
      user = m.user;
      if (!users.has(user)) users.set(user, new Set());
      users.get(user).add(ws);
      ws.send(JSON.stringify({ op: 'welcome', v: 1, user, jid: `${user}@${conf.component_domain}`, session: 'x' }));
    }
  });
  ws.on('close', () => { if (user) users.get(user)?.delete(ws); });
});
process.on('SIGTERM', async () => {
  for (const c of wss.clients) c.close(1001);
  await xmpp.stop().catch(() => {});
  process.exit(0);
});
