// A synthetic XEP-0114 server for benchmarks: it accepts gateways' component connections
// for one domain, answers the handshake, and then only writes what the benchmark gives it.
// Like Openfire, it lets several connections bind the same domain only when each stream
// header carries allowMultiple (a second one without it gets a `conflict` stream error),
// and `deal()` shares stanzas round-robin over the bound connections, as Openfire does
// with inbound stanzas for a component domain with several connections.
//
// Whatever a gateway writes after its handshake (presence, keep-alives, disco answers) is
// read and discarded: the server does no routing work of its own, so it is never the limit.

import crypto from 'node:crypto';
import net from 'node:net';

/**
 * @param {{domain: string, secret: string, host?: string}} opts
 *   domain: the component domain (the stream 'to'); secret: the component secret
 * @returns {Promise<{port: number, links: net.Socket[], waitLinks: (n: number, ms: number) => Promise<boolean>,
 *   deal: (stanzas: string[]) => void, maxBuffered: () => number, close: () => void}>}
 */
export function startComponentServer({ domain, secret, host = '127.0.0.1' }) {
  /** Bound connections, in the order they completed the handshake. */
  const links = [];
  const waiters = [];
  let next = 0;
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    const id = crypto.randomBytes(8).toString('hex');
    let buf = '';
    let opened = false;
    let multiple = false;
    let bound = false;
    const fail = (cond) => {
      sock.end(`<stream:error><${cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>`);
    };
    sock.on('data', (d) => {
      if (bound) return;
      // Only the stream header and the handshake are read; both are short.
      buf += d.toString('utf8');
      if (buf.length > 65536) {
        fail('policy-violation');
        return;
      }
      if (!opened) {
        const h = /<stream:stream[^>]*>/.exec(buf);
        if (!h) return;
        opened = true;
        const to = /\sto=['"]([^'"]+)['"]/.exec(h[0]);
        multiple = /\sallowMultiple=['"]true['"]/.test(h[0]);
        sock.write(`<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' ` +
          `xmlns='jabber:component:accept' from='${domain}' id='${id}'>`);
        if (!to || to[1] !== domain) {
          fail('host-unknown');
          return;
        }
      }
      const m = /<handshake>([0-9a-f]+)<\/handshake>/.exec(buf);
      if (!m) return;
      const want = crypto.createHash('sha1').update(id + secret).digest('hex');
      if (m[1] !== want) {
        fail('not-authorized');
        return;
      }
      if (links.length > 0 && !(multiple && links.every((l) => l.imgwMultiple))) {
        fail('conflict');
        return;
      }
      sock.imgwMultiple = multiple;
      sock.write('<handshake/>');
      bound = true;
      links.push(sock);
      wake();
    });
    const drop = () => {
      const i = links.indexOf(sock);
      if (i >= 0) links.splice(i, 1);
    };
    sock.on('close', drop);
    sock.on('error', drop);
  });
  return new Promise((resolve, reject) => {
    server.on('error', reject);
    server.listen(0, host, () => resolve({
      port: server.address().port,
      links,
      /** Resolves true once `n` connections are bound, false after `ms`. */
      async waitLinks(n, ms) {
        const deadline = Date.now() + ms;
        while (links.length < n) {
          const left = deadline - Date.now();
          if (left <= 0) return false;
          await new Promise((r) => {
            const t = setTimeout(r, left);
            waiters.push(() => { clearTimeout(t); r(); });
          });
        }
        return true;
      },
      /** Writes each stanza to the next bound connection in turn (one write per connection). */
      deal(stanzas) {
        const n = links.length;
        if (n === 0) return;
        const parts = Array.from({ length: n }, () => []);
        for (const s of stanzas) parts[next++ % n].push(s);
        next %= n;
        for (let i = 0; i < n; i++) if (parts[i].length) links[i].write(parts[i].join(''));
      },
      /** The largest output buffer over the bound connections, in bytes. */
      maxBuffered() {
        return links.reduce((m, l) => Math.max(m, l.writableLength), 0);
      },
      close() {
        for (const l of links.splice(0)) l.destroy();
        server.close();
      },
    }));
  });
}
