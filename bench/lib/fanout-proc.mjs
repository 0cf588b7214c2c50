// Load process of bench/fanout.mjs: holds WebSocket sessions on imgw and on the bare
// push server (bench/barepush.c) and counts, per session, every benchmark frame it gets,
// so that "every frame arrived exactly once on every session" is checked, not assumed.
//
// Started with fork(); argv[2] is JSON { localAddress, concurrency, openTimeoutMs }.
//
// IPC, parent -> child:                          child -> parent:
//   {cmd:'open', tag, kind, url, prefix, first, count, tabs}
//                                                  {ev:'opened', tag, ok, failed, failures}
//       opens `tabs` sessions for each user `${prefix}${i}`, i in [first, first+count);
//       kind 'imgw' says hello (development mode) and is up at `welcome`, kind 'bare'
//       connects to `${url}/${user}` and is up when open.
//   {cmd:'reset', tag, run, expect}                {ev:'reset'}
//       counts frames of run `run` on the sessions of `tag`; each should get `expect`.
//   {cmd:'count', tag}                             {ev:'count', frames}
//   {cmd:'collect', tag}                           {ev:'stats', ...}
//   {cmd:'close'}                                  {ev:'closed'} then exit
//
// A benchmark frame's body is `bench RUN SENDER SEQ TARGET SENT_MS`; frames of another
// run (stragglers) are ignored. A frame is a duplicate when its SEQ was already seen on
// the same session; it is misrouted when TARGET is not the session's user index.

import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const cfg = JSON.parse(process.argv[2]);
const nowMs = () => performance.timeOrigin + performance.now();

/** @type {Map<string, Array<object>>} sessions by tag */
const byTag = new Map();
/** Per tag, the run being counted. */
const runs = new Map();

function newRun(run, expect) {
  return { run, expect, frames: 0, dups: 0, misrouted: 0, foreign: 0, lat: [], first: Infinity, last: 0, bytes: 0 };
}

function onFrame(s, data) {
  const t = nowMs();
  const r = runs.get(s.tag);
  let m;
  try {
    m = JSON.parse(data.toString());
  } catch {
    if (r) r.foreign++;
    return;
  }
  if (m.op !== 'msg' || typeof m.body !== 'string') return;
  const parts = m.body.split(' ');
  if (!r || parts.length !== 6 || parts[0] !== 'bench' || parts[1] !== r.run) return;
  if (s.seen.has(parts[3])) {
    r.dups++;
    return;
  }
  s.seen.add(parts[3]);
  r.frames++;
  r.bytes += data.length;
  if (parts[4] !== '*' && Number(parts[4]) !== s.index) r.misrouted++;
  r.lat.push(t - Number(parts[5]));
  if (t < r.first) r.first = t;
  if (t > r.last) r.last = t;
}

function openOne(spec, index, tab, done) {
  const user = spec.prefix + index;
  const url = spec.kind === 'bare' ? `${spec.url}/${user}` : spec.url;
  const ws = new WebSocket(url, spec.kind === 'bare' ? 'barepush' : 'imgw.v1', {
    perMessageDeflate: false, localAddress: cfg.localAddress, handshakeTimeout: cfg.openTimeoutMs,
  });
  const s = { ws, tag: spec.tag, index, tab, up: false, seen: new Set(), closes: 0 };
  let finished = false;
  const finish = (ok, why) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    done(s, ok, why);
  };
  const timer = setTimeout(() => { finish(false, 'timeout'); ws.terminate(); }, cfg.openTimeoutMs);
  ws.on('open', () => {
    if (spec.kind === 'bare') {
      s.up = true;
      finish(true);
    } else {
      ws.send(`{"op":"hello","v":1,"user":"${user}"}`);
    }
  });
  ws.on('message', (data) => {
    if (!s.up) {
      let m = null;
      try { m = JSON.parse(data.toString()); } catch { /* not JSON: not up */ }
      if (m && m.op === 'welcome') {
        s.up = true;
        finish(true);
      } else if (m && m.op === 'error') {
        finish(false, `error:${m.code}`);
      }
      return;
    }
    onFrame(s, data);
  });
  ws.on('close', (code) => {
    if (s.up && !s.closing) s.closes++;
    s.up = false;
    finish(false, `close:${code}`);
  });
  ws.on('error', (err) => finish(false, `ws:${err.code || err.message}`));
  return s;
}

function openAll(spec) {
  const list = byTag.get(spec.tag) || [];
  byTag.set(spec.tag, list);
  const todo = [];
  for (let i = spec.first; i < spec.first + spec.count; i++) for (let t = 0; t < spec.tabs; t++) todo.push([i, t]);
  const failures = {};
  let next = 0;
  let inflight = 0;
  let ok = 0;
  let failed = 0;
  return new Promise((resolve) => {
    if (todo.length === 0) resolve({ ok, failed, failures });
    const pump = () => {
      while (inflight < cfg.concurrency && next < todo.length) {
        inflight++;
        const [i, t] = todo[next++];
        list.push(openOne(spec, i, t, (s, good, why) => {
          inflight--;
          if (good) ok++;
          else {
            failed++;
            failures[why] = (failures[why] || 0) + 1;
          }
          if (ok + failed === todo.length) resolve({ ok, failed, failures });
          else pump();
        }));
      }
    };
    pump();
  });
}

function collect(tag) {
  const r = runs.get(tag) || newRun('', 0);
  const list = byTag.get(tag) || [];
  let short = 0;
  let over = 0;
  let closes = 0;
  let up = 0;
  for (const s of list) {
    if (s.seen.size < r.expect) short++;
    if (s.seen.size > r.expect) over++;
    closes += s.closes;
    if (s.up) up++;
  }
  return {
    ev: 'stats', frames: r.frames, dups: r.dups, misrouted: r.misrouted, foreign: r.foreign,
    lat: r.lat, first: r.first, last: r.last, bytes: r.bytes, sessions: list.length, short, over, closes, up,
  };
}

function closeAll() {
  const all = [...byTag.values()].flat();
  return new Promise((resolve) => {
    let left = 0;
    for (const s of all) {
      if (s.ws.readyState === WebSocket.CLOSED) continue;
      s.closing = true;
      left++;
      s.ws.once('close', () => { if (--left === 0) resolve(); });
      if (s.ws.readyState === WebSocket.OPEN) s.ws.close(1000);
      else s.ws.terminate();
    }
    if (left === 0) resolve();
    setTimeout(() => {
      for (const s of all) if (s.ws.readyState !== WebSocket.CLOSED) s.ws.terminate();
      setTimeout(resolve, 200);
    }, 5000).unref();
  });
}

process.on('message', async (msg) => {
  switch (msg.cmd) {
    case 'open':
      process.send({ ev: 'opened', tag: msg.tag, ...(await openAll(msg)) });
      break;
    case 'reset':
      runs.set(msg.tag, newRun(msg.run, msg.expect));
      for (const s of byTag.get(msg.tag) || []) s.seen = new Set();
      process.send({ ev: 'reset' });
      break;
    case 'count':
      process.send({ ev: 'count', frames: (runs.get(msg.tag) || { frames: 0 }).frames });
      break;
    case 'collect':
      process.send(collect(msg.tag));
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
