// Idle WebSocket sessions: dead peers are found by the kernel's TCP keepalive on the
// gateway's accepted sockets, not by libwebsockets' validity timers (each of which, in lws
// 4.1, costs a walk of one sorted list of every session's timer: quadratic at opening and
// ~15 CPU s per 19,800 sessions every 300 s; docs/performance.md, "Scale-out: 5 gateways").
// The keepalive is read back from /proc/net/tcp, where the kernel shows which timer a
// socket has armed.
import { after, before, describe, it } from '../lib/test.mjs';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { gatewayBuilt, startImgw } from '../lib/imgw.mjs';
import { openWs } from '../lib/wsclient.mjs';
import { until } from '../lib/bounded.mjs';

const hex = (port) => port.toString(16).toUpperCase().padStart(4, '0');

/**
 * The gateway's side of the established TCP connection from `peerPort` to `port`, as
 * the kernel shows it: the timer kind armed (0 none, 1 retransmit, 2 keepalive or another
 * socket timer, 4 zero window probe) and the seconds to its expiry. Empty if not found.
 */
function gatewaySockets(port, peerPort) {
  const out = [];
  for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || !f[1].endsWith(`:${hex(port)}`) || !f[2].endsWith(`:${hex(peerPort)}`) || f[3] !== '01') continue;
    const [tr, when] = f[5].split(':');
    out.push({ timer: Number.parseInt(tr, 16), seconds: Number.parseInt(when, 16) / 100 });
  }
  return out;
}

describe('idle sessions', { skip: !gatewayBuilt() && 'build/gateway/imgw is not built' }, () => {
  let gw;

  before(async () => {
    gw = await startImgw({ waitLinkUp: false });
  });

  after(async () => {
    await gw?.cleanup();
  });

  it('arms TCP keepalive (300 s) on a welcomed WebSocket session', async () => {
    const a = await openWs(gw.wsUrl);
    try {
      const w = await a.hello('idler');
      assert.equal(w.op, 'welcome');
      // Right after a write the kernel may show the retransmit timer until the peer's ACK
      // is in; the keepalive timer is what stays.
      let seen = [];
      const socks = await until('the keepalive timer on the session\'s socket', 5000, () => {
        seen = gatewaySockets(gw.port, a.ws._socket.localPort);
        return seen.length === 1 && seen[0].timer === 2 ? seen : null;
      }).catch((err) => {
        throw new Error(`${err.message}; /proc/net/tcp shows ${JSON.stringify(seen)} (timer 0: none armed)`);
      });
      // Idle keepalive time 300 s, less what passed since the socket was accepted.
      assert.ok(socks[0].seconds > 240 && socks[0].seconds <= 300, `keepalive due in ${socks[0].seconds} s`);
    } finally {
      await a.close();
    }
  });
});
