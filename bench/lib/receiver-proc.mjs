// Child process that holds a slice of the benchmark's web sessions and records the
// end-to-end latency of every benchmark message they receive.
//
// Started by bench/run.mjs with fork(); argv[2] is a JSON object:
//   { kind: 'imgw' | 'xmpp-ws', url, first, count, prefix, domain, password,
//     localAddress, concurrency, openTimeoutMs }
// Users are `${prefix}${i}` for i in [first, first + count).
//
// IPC, parent -> child:            child -> parent:
//   {cmd:'open'}                     {ev:'opened', ok, failed, failures, failedIdx, ms}
//   {cmd:'reset', run}               {ev:'reset'}
//   {cmd:'count'}                    {ev:'count', unique}
//   {cmd:'collect'}                  {ev:'stats', unique, dups, misrouted, foreign, lat, ...}
//   {cmd:'close'}                    {ev:'closed'} then exit
//
// Bodies are `bench RUN SENDER SEQ TARGET SENT_MS` (see sender-proc.mjs). Only bodies of
// the current RUN are counted, so warm-up stragglers never pollute a measurement.

import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const nowMs = () => performance.timeOrigin + performance.now();

/** @type {Array<Session>} */
const sessions = [];
let run = '';
let lat = [];
let afterGw = [];
let seen = new Set();
let dups = 0;
let misrouted = 0;
let foreign = 0;
/**
 * How late this process's own event loop ran during the run: a stall here (garbage
 * collection, a burst of frames) shows up as latency that is not the server's.
 */
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
/** Per second of send time since the first message of the run: [count, max latency]. */
let timeline = [];
let runStart = Infinity;
/** Close codes and error frames seen after a session was up: the gateway should send none. */
let dropsAfterOpen = {};
let errorsAfterOpen = {};

function bump(map, key) {
  map[key] = (map[key] || 0) + 1;
}

/**
 * Called for every chat body a session receives.
 * @param {number} index   the receiving user's index
 * @param {string} body
 */
function onBody(index, body, gwTs) {
  const t = nowMs();
  const parts = body.split(' ');
  if (parts.length !== 6 || parts[0] !== 'bench') {
    foreign++;
    return;
  }
  if (parts[1] !== run) return;
  const key = parts[2] + ':' + parts[3];
  if (seen.has(key)) {
    dups++;
    return;
  }
  seen.add(key);
  if (Number(parts[4]) !== index) misrouted++;
  const sentAt = Number(parts[5]);
  const l = t - sentAt;
  lat.push(l);
  if (typeof gwTs === 'number') {
    // imgw stamps `ts` (whole ms, CLOCK_REALTIME) when the stanza reaches its router, so
    // ts splits the path: before it, sender -> Prosody -> component link; after it, the
    // gateway's fan-out and WebSocket write -> this process. Truncation to whole ms moves
    // up to 1 ms from the first part to the second.
    afterGw.push(t - gwTs);
  }
  const sec = Math.max(0, Math.floor((sentAt - runStart) / 1000));
  const b = timeline[sec] || (timeline[sec] = [0, 0]);
  b[0]++;
  if (l > b[1]) b[1] = l;
}

// --- imgw JSON protocol --------------------------------------------------------------

function openImgw(index, done) {
  const user = cfg.prefix + index;
  const ws = new WebSocket(cfg.url, 'imgw.v1', {
    perMessageDeflate: false,
    localAddress: cfg.localAddress,
    handshakeTimeout: cfg.openTimeoutMs,
  });
  const s = { ws, index, up: false };
  let finished = false;
  const finish = (ok, why) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(s, ok, why);
  };
  const timer = setTimeout(() => {
    finish(false, 'timeout');
    ws.terminate();
  }, cfg.openTimeoutMs);
  ws.on('open', () => ws.send(`{"op":"hello","v":1,"user":"${user}"}`));
  ws.on('message', (data) => {
    let m;
    try {
      m = JSON.parse(data.toString());
    } catch {
      if (s.up) bump(errorsAfterOpen, 'unparsable_frame');
      return;
    }
    if (m.op === 'msg') {
      onBody(index, typeof m.body === 'string' ? m.body : '', m.ts);
    } else if (m.op === 'welcome') {
      s.up = true;
      finish(true);
    } else if (m.op === 'error') {
      if (s.up) bump(errorsAfterOpen, m.code);
      else finish(false, `error:${m.code}`);
    }
  });
  ws.on('close', (code) => {
    if (s.up && !s.closing) bump(dropsAfterOpen, String(code));
    s.up = false;
    finish(false, `close:${code}`);
  });
  ws.on('error', (err) => finish(false, `ws:${err.code || err.message}`));
  return s;
}

// --- XMPP over WebSocket (RFC 7395), what Converse.js does ---------------------------

const FRAMING = 'urn:ietf:params:xml:ns:xmpp-framing';

function unescapeXml(s) {
  return s.replace(/&(lt|gt|amp|quot|apos);/g, (_, e) =>
    ({ lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" })[e]);
}

function openXmppWs(index, done) {
  const user = cfg.prefix + index;
  const ws = new WebSocket(cfg.url, 'xmpp', {
    perMessageDeflate: false,
    localAddress: cfg.localAddress,
    handshakeTimeout: cfg.openTimeoutMs,
  });
  const s = { ws, index, up: false };
  let state = 'open1';
  let finished = false;
  const finish = (ok, why) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(s, ok, why);
  };
  const timer = setTimeout(() => {
    finish(false, `timeout:${state}`);
    ws.terminate();
  }, cfg.openTimeoutMs);
  const open = () => ws.send(`<open xmlns="${FRAMING}" to="${cfg.domain}" version="1.0"/>`);
  ws.on('open', open);
  ws.on('message', (data) => {
    const f = data.toString();
    if (state === 'up') {
      if (f.startsWith('<message')) {
        const m = /<body>([^<]*)<\/body>/.exec(f);
        if (m) onBody(index, unescapeXml(m[1]));
      } else if (f.startsWith('<close') || f.includes('<stream:error')) {
        bump(errorsAfterOpen, f.slice(0, 80));
      }
      return;
    }
    // Each RFC 7395 frame is one complete element, so a prefix test is enough here.
    if (f.startsWith('<open')) return;
    if (f.includes('stream:error') || f.startsWith('<close') || f.startsWith('<failure')) {
      finish(false, `${state}:${f.slice(0, 120)}`);
      ws.close();
      return;
    }
    if (state === 'open1' && f.includes('features')) {
      const cred = Buffer.from(`\0${user}\0${cfg.password}`).toString('base64');
      ws.send(`<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">${cred}</auth>`);
      state = 'auth';
    } else if (state === 'auth' && f.startsWith('<success')) {
      state = 'open2';
      open();
    } else if (state === 'open2' && f.includes('features')) {
      ws.send('<iq xmlns="jabber:client" type="set" id="bind1"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind">' +
        '<resource>bench</resource></bind></iq>');
      state = 'bind';
    } else if (state === 'bind' && f.startsWith('<iq') && f.includes('bind1')) {
      if (!f.includes('result')) {
        finish(false, `bind:${f.slice(0, 120)}`);
        return;
      }
      // Initial presence makes the session available, so messages to the bare JID
      // reach it, as they do for a Converse.js tab.
      ws.send('<presence xmlns="jabber:client"/>');
      state = 'up';
      s.up = true;
      finish(true);
    }
  });
  ws.on('close', (code) => {
    if (s.up && !s.closing) bump(dropsAfterOpen, String(code));
    s.up = false;
    finish(false, `close:${code}:${state}`);
  });
  ws.on('error', (err) => finish(false, `ws:${err.code || err.message}`));
  return s;
}

// --- opening all sessions with bounded concurrency -----------------------------------

function openAll() {
  const t0 = Date.now();
  const opener = cfg.kind === 'imgw' ? openImgw : openXmppWs;
  const failures = {};
  let next = cfg.first;
  const end = cfg.first + cfg.count;
  let inflight = 0;
  let ok = 0;
  let failed = 0;
  const failedIdx = [];
  return new Promise((resolve) => {
    const pump = () => {
      while (inflight < cfg.concurrency && next < end) {
        inflight++;
        const s = opener(next++, (sess, good, why) => {
          inflight--;
          if (good) ok++;
          else {
            failed++;
            failedIdx.push(sess.index);
            bump(failures, why);
          }
          if (ok + failed === cfg.count) resolve({ ok, failed, failures, failedIdx, ms: Date.now() - t0 });
          else pump();
        });
        sessions.push(s);
      }
    };
    pump();
  });
}

function closeAll() {
  return new Promise((resolve) => {
    let left = 0;
    for (const s of sessions) {
      const st = s.ws.readyState;
      if (st === WebSocket.CLOSED) continue;
      s.closing = true;
      left++;
      s.ws.once('close', () => { if (--left === 0) resolve(); });
      if (st === WebSocket.OPEN) s.ws.close(1000);
      else s.ws.terminate();
    }
    if (left === 0) resolve();
    // Sessions whose close handshake does not finish in time are cut.
    setTimeout(() => {
      for (const s of sessions) if (s.ws.readyState !== WebSocket.CLOSED) s.ws.terminate();
      setTimeout(resolve, 200);
    }, 5000).unref();
  });
}

process.on('message', async (msg) => {
  switch (msg.cmd) {
    case 'open':
      process.send({ ev: 'opened', ...(await openAll()) });
      break;
    case 'reset':
      run = msg.run;
      runStart = msg.start ?? Infinity;
      loopDelay.disable();
      loopDelay.reset();
      loopDelay.enable();
      timeline = [];
      lat = [];
      afterGw = [];
      seen = new Set();
      dups = 0;
      misrouted = 0;
      foreign = 0;
      dropsAfterOpen = {};
      errorsAfterOpen = {};
      process.send({ ev: 'reset' });
      break;
    case 'count':
      process.send({ ev: 'count', unique: seen.size });
      break;
    case 'collect':
      process.send({
        ev: 'stats', unique: seen.size, dups, misrouted, foreign, lat, afterGw,
        timeline: Array.from(timeline, (b) => b || [0, 0]),
        loopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
        dropsAfterOpen, errorsAfterOpen,
        up: sessions.reduce((n, s) => n + (s.up ? 1 : 0), 0),
      });
      break;
    case 'close':
      await closeAll();
      process.send({ ev: 'closed' }, () => process.exit(0));
      break;
    default:
      break;
  }
});
process.on('disconnect', () => process.exit(0));
