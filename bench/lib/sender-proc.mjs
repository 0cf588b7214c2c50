// Child process that holds the benchmark's XMPP senders: M plain c2s connections to
// Prosody (the "app users") that send chat messages at an aggregate rate to random
// web users.
//
// argv[2] is JSON: { port, domain, users: [[name, password], ...] }
//
// IPC, parent -> child:                          child -> parent:
//   {cmd:'login'}                                  {ev:'ready', ok, failed, failures}
//   {cmd:'run', run, rate, seconds, targets:{prefix, count, domain}, skip:[index...]}
//                                                  {ev:'done', sent, seconds, lagMaxMs}
//   {cmd:'close'}                                  {ev:'closed'} then exit
//
// Each body is `bench RUN SENDER SEQ TARGET SENT_MS`, SENT_MS being
// performance.timeOrigin + performance.now() just before the write: wall-clock
// milliseconds with sub-millisecond precision that other processes can compare with.
//
// The client is a deliberately small XMPP c2s client (PLAIN on loopback, bind,
// presence) over a raw socket with TCP_NODELAY: a general library would spend the load
// generator's CPU on features the benchmark does not use.

import net from 'node:net';
import { performance } from 'node:perf_hooks';

const cfg = JSON.parse(process.argv[2]);
const nowMs = () => performance.timeOrigin + performance.now();
const STREAM_NS = "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'";

/** @type {Array<{sock: net.Socket, name: string, up: boolean}>} */
const senders = [];
let stoppedByPeer = {};

function login(name, password) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port: cfg.port });
    sock.setNoDelay(true);
    sock.setEncoding('utf8');
    const s = { sock, name, up: false };
    let state = 'features1';
    let buf = '';
    let finished = false;
    const finish = (ok, why) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      resolve({ s, ok, why });
    };
    const timer = setTimeout(() => { finish(false, `timeout:${state}`); sock.destroy(); }, 20000);
    const header = () => sock.write(
      `<?xml version='1.0'?><stream:stream to='${cfg.domain}' version='1.0' ${STREAM_NS}>`);
    sock.on('connect', header);
    sock.on('data', (chunk) => {
      if (s.up) {
        // Nothing is expected once up; only watch for the stream ending.
        if (chunk.includes('stream:error') || chunk.includes('</stream:stream>')) {
          stoppedByPeer[name] = chunk.slice(0, 200);
        }
        return;
      }
      buf += chunk;
      if (buf.includes('stream:error') || buf.includes('<failure')) {
        finish(false, `${state}:${buf.slice(-200)}`);
        sock.destroy();
        return;
      }
      if (state === 'features1' && buf.includes('</stream:features>')) {
        buf = '';
        const cred = Buffer.from(`\0${name}\0${password}`).toString('base64');
        sock.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${cred}</auth>`);
        state = 'auth';
      } else if (state === 'auth' && buf.includes('<success')) {
        buf = '';
        state = 'features2';
        header();
      } else if (state === 'features2' && buf.includes('</stream:features>')) {
        buf = '';
        sock.write("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>" +
          '<resource>sender</resource></bind></iq>');
        state = 'bind';
      } else if (state === 'bind' && /id=['"]bind1['"]/.test(buf) && buf.includes('</iq>')) {
        if (!/type=['"]result['"]/.test(buf)) {
          finish(false, `bind:${buf.slice(0, 200)}`);
          return;
        }
        buf = '';
        sock.write('<presence/>');
        s.up = true;
        finish(true);
      }
    });
    sock.on('error', (err) => finish(false, `socket:${err.code || err.message}`));
    sock.on('close', () => {
      if (s.up) stoppedByPeer[name] = stoppedByPeer[name] || 'closed';
      s.up = false;
      finish(false, `closed:${state}`);
    });
  });
}

/**
 * Sends at `rate` messages per second in aggregate for `seconds`, round-robin over the
 * senders. A 1 ms timer tops up to the number due so far, so the schedule catches up
 * after a late tick instead of drifting; lagMaxMs reports the worst late tick.
 */
function runLoad({ run, rate, seconds, targets, skip = [] }) {
  // Users whose session never opened get nothing: a message to them could not arrive.
  const skipSet = new Set(skip);
  const pick = () => {
    for (;;) {
      const t = Math.floor(Math.random() * targets.count);
      if (!skipSet.has(t)) return t;
    }
  };
  return new Promise((resolve) => {
    const t0 = performance.now();
    const total = Math.round(rate * seconds);
    const seq = new Array(senders.length).fill(0);
    let sent = 0;
    let rr = 0;
    let lastTick = t0;
    let lagMaxMs = 0;
    const tick = () => {
      const now = performance.now();
      lagMaxMs = Math.max(lagMaxMs, now - lastTick);
      lastTick = now;
      const due = Math.min(total, Math.floor(((now - t0) / 1000) * rate));
      while (sent < due) {
        const k = rr;
        rr = (rr + 1) % senders.length;
        const s = senders[k];
        const target = pick();
        const n = seq[k]++;
        s.sock.write(`<message to='${targets.prefix}${target}@${targets.domain}' type='chat' id='${run}.${n}'>` +
          `<body>bench ${run} ${k} ${n} ${target} ${nowMs().toFixed(3)}</body></message>`);
        sent++;
      }
      if (sent >= total) {
        resolve({ sent, seconds: (performance.now() - t0) / 1000, lagMaxMs });
        return;
      }
      setTimeout(tick, 1);
    };
    tick();
  });
}

process.on('message', async (msg) => {
  if (msg.cmd === 'login') {
    const results = await Promise.all(cfg.users.map(([u, p]) => login(u, p)));
    const failures = {};
    for (const r of results) {
      if (r.ok) senders.push(r.s);
      else failures[r.why] = (failures[r.why] || 0) + 1;
    }
    process.send({ ev: 'ready', ok: senders.length, failed: results.length - senders.length, failures });
  } else if (msg.cmd === 'run') {
    stoppedByPeer = {};
    const r = await runLoad(msg);
    process.send({ ev: 'done', ...r, stoppedByPeer });
  } else if (msg.cmd === 'close') {
    for (const s of senders) {
      s.up = false;
      s.sock.end('</stream:stream>');
    }
    setTimeout(() => {
      for (const s of senders) s.sock.destroy();
      process.send({ ev: 'closed' }, () => process.exit(0));
    }, 300);
  }
});
process.on('disconnect', () => process.exit(0));
