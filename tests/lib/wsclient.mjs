// A WebSocket test client for the imgw protocol (npm `ws`), with an inbox of frames.
//
// Usage:
//   import { openWs } from '../lib/wsclient.mjs';
//   const a = await openWs(gw.wsUrl);                  // resolves once open
//   await a.hello('alice');                            // dev mode; or a.hello({ ticket })
//   a.send({ op: 'send', to: 'bob', body: 'hi', cid: 'c1' });
//   const ack = await a.next((f) => f.op === 'ack');   // first matching frame, bounded
//   const { code, reason } = await a.closed;           // close code from the server
//
// Every frame received is kept in arrival order; next(pred) takes the first match out
// of the inbox (others stay), waiting up to ms for one. With pred = () => true it is the
// next frame in order, which lets a test prove that nothing else came first.

import WebSocket from 'ws';

export async function openWs(url, { origin, headers = {}, ms = 5000 } = {}) {
  const opts = { headers: { ...headers }, maxPayload: 64 * 1024 * 1024 };
  if (origin) opts.headers.Origin = origin;
  const ws = new WebSocket(url, opts);
  const inbox = [];
  const waiters = [];
  let closeInfo = null;
  const c = {
    ws,
    inbox,
    raw: [],
    closed: new Promise((resolve) => ws.on('close', (code, reason) => {
      closeInfo = { code, reason: reason.toString() };
      resolve(closeInfo);
      for (const w of waiters.splice(0)) w.reject(new Error(`socket closed ${code} ${reason}`));
    })),
    send(obj) { ws.send(typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj)); },
    next(pred = () => true, waitMs = 5000) {
      const i = inbox.findIndex(pred);
      if (i >= 0) return Promise.resolve(inbox.splice(i, 1)[0]);
      if (closeInfo) return Promise.reject(new Error(`socket closed ${closeInfo.code}`));
      return new Promise((resolve, reject) => {
        const w = { pred, resolve, reject };
        w.timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching frame within ${waitMs} ms; inbox: ${JSON.stringify(inbox).slice(0, 500)}`));
        }, waitMs);
        waiters.push(w);
      });
    },
    /** Resolves true if no frame matching pred arrives within ms. */
    async none(pred, waitMs = 300) {
      try { await c.next(pred, waitMs); return false; } catch { return true; }
    },
    async hello(userOrTicket, extra = {}) {
      const f = typeof userOrTicket === 'string' ? { user: userOrTicket } : userOrTicket;
      c.send({ op: 'hello', v: 1, ...f, ...extra });
      return c.next((x) => x.op === 'welcome' || x.op === 'error');
    },
    /** Starts the close handshake; drops the TCP connection if it is not done in 3 s. */
    close() {
      ws.close();
      const t = setTimeout(() => ws.terminate(), 3000);
      return c.closed.finally(() => clearTimeout(t));
    },
  };
  ws.on('message', (data, isBinary) => {
    c.raw.push(data);
    let f;
    try { f = JSON.parse(data.toString('utf8')); } catch { f = { op: '__unparsable', data: data.toString() }; }
    f.__binary = isBinary;
    const wi = waiters.findIndex((w) => w.pred(f));
    if (wi >= 0) {
      const [w] = waiters.splice(wi, 1);
      clearTimeout(w.timer);
      w.resolve(f);
    } else {
      inbox.push(f);
    }
  });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`WebSocket ${url} did not open within ${ms} ms`)), ms);
    ws.once('open', () => { clearTimeout(t); resolve(); });
    ws.once('unexpected-response', (req, res) => { clearTimeout(t); reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode}`), { status: res.statusCode })); });
    ws.once('error', (err) => { clearTimeout(t); reject(err); });
  });
  return c;
}
