// Raw HTTP/1.x over a TCP socket, for what fetch() hides: exact request bytes (HTTP/1.0,
// Content-Length with Transfer-Encoding, over-long headers), a chosen local address
// (127.0.0.2 is another client), answers read as they come, and whether the server
// closed the connection. Every wait is bounded.
//
//   const c = await rawConnect(port, { localAddress: '127.0.0.2' });
//   c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
//   const res = await c.response();   // { status, headers, body } (Content-Length or chunked)
//   await c.closed(2000);             // true when the server closed the socket
//   c.destroy();

import net from 'node:net';
import { scaled } from './bounded.mjs';

export async function rawConnect(port, { host = '127.0.0.1', localAddress, ms = 5000 } = {}) {
  const sock = net.connect({ port, host, localAddress });
  let buf = Buffer.alloc(0);
  let ended = false;
  const wake = new Set();
  sock.on('data', (d) => { buf = Buffer.concat([buf, d]); for (const w of wake) w(); });
  sock.on('close', () => { ended = true; for (const w of wake) w(); });
  sock.on('error', () => { ended = true; for (const w of wake) w(); });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`connect to :${port} timed out`)), scaled(ms));
    sock.once('connect', () => { clearTimeout(t); resolve(); });
    sock.once('error', (e) => { clearTimeout(t); reject(e); });
  });

  /** Waits until pred(buf) returns something other than undefined, or the socket ends. */
  function waitFor(what, pred, wms = ms) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const v = pred(buf);
        if (v !== undefined) { done(); resolve(v); } else if (ended) { done(); reject(new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)); }
      };
      const t = setTimeout(() => { done(); reject(new Error(`timed out (${wms} ms) waiting for ${what}; got ${JSON.stringify(buf.toString('latin1').slice(0, 300))}`)); }, scaled(wms));
      const done = () => { clearTimeout(t); wake.delete(check); };
      wake.add(check);
      check();
    });
  }

  function parseHead() {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/(1\.[01]) (\d{3})/.exec(lines[0]);
    if (!m) throw new Error(`not an HTTP answer: ${lines[0]}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
    }
    return { http: m[1], status: Number(m[2]), headers, headLen: end + 4 };
  }

  const c = {
    sock,
    write(data) { sock.write(data); },
    /** The status line and headers of the next answer; its body is left in the buffer. */
    async head(wms = ms) {
      const h = await waitFor('response headers', parseHead, wms);
      buf = buf.subarray(h.headLen);
      return h;
    },
    /** n bytes of body. */
    async read(n, wms = ms) {
      const out = await waitFor(`${n} bytes`, (b) => (b.length >= n ? b.subarray(0, n) : undefined), wms);
      buf = buf.subarray(n);
      return out.toString('utf8');
    },
    /** One chunk of a chunked body ('' for the last one). */
    async chunk(wms = ms) {
      const r = await waitFor('a chunk', (b) => {
        const e = b.indexOf('\r\n');
        if (e < 0) return undefined;
        const size = parseInt(b.subarray(0, e).toString('latin1'), 16);
        if (Number.isNaN(size)) throw new Error(`bad chunk size line ${b.subarray(0, e)}`);
        if (b.length < e + 2 + size + 2) return undefined;
        return { size, start: e + 2 };
      }, wms);
      const data = buf.subarray(r.start, r.start + r.size).toString('utf8');
      buf = buf.subarray(r.start + r.size + 2);
      return data;
    },
    /** A whole answer: Content-Length, chunked, or up to the close. */
    async response(wms = ms) {
      const h = await c.head(wms);
      let body = '';
      if (h.headers['content-length'] !== undefined) body = await c.read(Number(h.headers['content-length']), wms);
      else if ((h.headers['transfer-encoding'] || '').toLowerCase() === 'chunked') {
        for (let part = await c.chunk(wms); part !== ''; part = await c.chunk(wms)) body += part;
      } else if (h.status !== 204 && h.status !== 304) {
        await waitFor('the close that ends the body', () => (ended ? true : undefined), wms).catch(() => {});
        body = buf.toString('utf8');
        buf = Buffer.alloc(0);
      }
      return { ...h, body };
    },
    /** Resolves true once the server closed the connection, false after wms. */
    closed(wms = 2000) {
      return waitFor('close', () => (ended ? true : undefined), wms).then(() => true, () => false);
    },
    destroy() { sock.destroy(); },
  };
  return c;
}

/** One request on a fresh connection; the connection is closed afterwards. */
export async function rawRequest(port, text, opts = {}) {
  const c = await rawConnect(port, opts);
  try {
    c.write(text);
    return await c.response(opts.ms);
  } finally {
    c.destroy();
  }
}
