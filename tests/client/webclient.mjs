// An ImgwClient for Node tests (npm `ws`) that records every message it receives, so a
// test can await one that arrived before it started waiting.
//
//   const a = webClient(gw.wsUrl, 'alice');
//   await a.connect();
//   const m = await a.next((x) => x.body === 'hi');   // bounded (ms, default 10 s)
//   a.bodies('hi')                                     // every message with that body
import WebSocket from 'ws';
import { ImgwClient } from '../../clients/web/imgw.js';

export function webClient(url, user, extra = {}) {
  const c = new ImgwClient({
    url, user, WebSocket, backoff: { minMs: 50, maxMs: 400 }, pingIntervalMs: 0, ...extra,
  });
  c.seen = [];
  c.waiters = [];
  c.on('message', (m) => {
    c.seen.push(m);
    for (const w of [...c.waiters]) {
      if (w.pred(m)) {
        c.waiters.splice(c.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  /** First message (already seen or future) matching pred. */
  c.next = (pred, ms = 10000) => {
    const hit = c.seen.find(pred);
    if (hit) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      c.waiters.push(w);
      setTimeout(() => {
        const i = c.waiters.indexOf(w);
        if (i < 0) return;
        c.waiters.splice(i, 1);
        reject(new Error(`${user}: no matching message in ${ms} ms; seen: ${JSON.stringify(c.seen.map((m) => [m.from, m.body]))}`));
      }, ms);
    });
  };
  c.bodies = (body) => c.seen.filter((m) => m.body === body);
  return c;
}
