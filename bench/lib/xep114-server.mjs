// A synthetic XEP-0114 server for benchmarks (the same one bench/saturate.mjs embeds): it
// accepts the gateway's component connection, answers the stream header and the
// handshake, and then only writes what the bench gives it; the gateway's output after the
// handshake is ignored. No routing work of its own, so the XMPP server is never the limit.

import crypto from 'node:crypto';
import net from 'node:net';

/**
 * @param {{componentDomain: string, secret: string}} opts
 * @returns {Promise<{server: net.Server, port: number, up: Promise<net.Socket>}>} `up`
 *   resolves with the component socket once a handshake succeeded.
 */
export function startComponentServer({ componentDomain, secret }) {
  let link = null;
  let onUp = null;
  const up = new Promise((r) => { onUp = r; });
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    const id = crypto.randomBytes(8).toString('hex');
    let buf = '';
    let opened = false;
    sock.on('data', (d) => {
      if (link === sock) return;
      buf += d.toString('utf8');
      if (buf.length > 65536) {
        sock.destroy();
        return;
      }
      if (!opened && buf.includes('<stream:stream')) {
        opened = true;
        sock.write(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' ` +
          `xmlns='jabber:component:accept' from='${componentDomain}' id='${id}'>`);
      }
      const m = buf.match(/<handshake>([0-9a-f]+)<\/handshake>/);
      if (m) {
        const want = crypto.createHash('sha1').update(id + secret).digest('hex');
        if (m[1] !== want) {
          sock.end('<stream:error><not-authorized xmlns=\'urn:ietf:params:xml:ns:xmpp-streams\'/></stream:error>');
          return;
        }
        sock.write('<handshake/>');
        link = sock;
        onUp(sock);
      }
    });
    sock.on('error', () => {});
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, port: server.address().port, up })));
}
