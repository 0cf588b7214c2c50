// The imgw demo page: sign in as any user (development mode), the chat list from the
// server with unread bubbles kept live, one conversation at a time with scroll-back
// through history, text and pictures. All message data goes into the page through
// textContent and element properties, never as HTML.
//
// URL parameters: ?user=NAME prefills the sign-in, ?transport=jsonp|websocket forces a
// transport, ?ws=URL overrides the WebSocket URL, ?page=N sets the history page size.

import { ImgwClient, compareIds, newCid } from '../client/imgw.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const PAGE = Math.min(100, Math.max(1, Number(params.get('page')) || 30));

/** WebSocket URL next to this page: `/demo/` is served by the gateway, `/ws` too. */
function gatewayUrl() {
  const override = params.get('ws');
  if (override) return override;
  const u = new URL('../ws', location.href);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.search = '';
  u.hash = '';
  return u.href;
}

/** @type {ImgwClient | null} */
let client = null;
let current = null; // open conversation key (bare JID)
let myDomain = '';
let reconnectInfo = null;

/**
 * What the page holds of each conversation: messages sorted by id (own sends waiting
 * for their ack at the end), whether older history exists, and the last read marker
 * this page sent.
 * @typedef {{list: any[], byKey: Map<string, any>, loaded: boolean, loading: boolean,
 *   more: boolean, readSent: string | null}} Conv
 * @type {Map<string, Conv>}
 */
const convs = new Map();

function conv(key) {
  let c = convs.get(key);
  if (!c) {
    c = { list: [], byKey: new Map(), loaded: false, loading: false, more: false, readSent: null };
    convs.set(key, c);
  }
  return c;
}

// ---- names, avatars, times ----

function displayName(jid) {
  const at = jid.indexOf('@');
  if (at < 0) return jid;
  return jid.slice(at + 1) === myDomain ? jid.slice(0, at) : jid;
}

function hue(s) {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function paintAvatar(el, jid) {
  const name = displayName(jid);
  el.textContent = (name.codePointAt(0) ? String.fromCodePoint(name.codePointAt(0)) : '?').toUpperCase();
  el.style.setProperty('--hue', String(hue(jid)));
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });

function shortTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}

/**
 * Origins whose pictures are shown: the gateway's own (the page's, and the one the
 * WebSocket URL points at) and those the operator lists in the page's
 * <meta name="imgw-image-origins">. Not from the URL's parameters: a link must not be
 * able to widen this.
 */
function imageOrigins() {
  const out = new Set([location.origin]);
  try {
    const g = new URL(gatewayUrl());
    g.protocol = g.protocol === 'wss:' ? 'https:' : 'http:';
    out.add(g.origin);
  } catch { /* no usable gateway URL: only the page's origin */ }
  const meta = document.querySelector('meta[name="imgw-image-origins"]')?.content ?? '';
  for (const o of meta.split(/\s+/).filter(Boolean)) {
    try {
      const u = new URL(o);
      if (u.protocol === 'https:' || u.protocol === 'http:') out.add(u.origin);
    } catch { /* ignore a malformed entry */ }
  }
  return out;
}
const IMAGE_ORIGINS = imageOrigins();

/**
 * The URL of a picture message, or null when the body is not one the gateway made: an
 * http(s) URL of `/files/<32 hex>.<jpg|png|gif|webp>` at one of IMAGE_ORIGINS. Anything
 * else is shown as text, so a message cannot make the page load arbitrary addresses (a
 * tracking pixel, a request to an intranet host).
 */
function pictureUrl(m) {
  if (m.kind !== 'image' && !m.localPreview) return null;
  if (m.localPreview) return m.localPreview;
  try {
    const u = new URL(m.body);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    if (!IMAGE_ORIGINS.has(u.origin) || u.username || u.password || u.search || u.hash) return null;
    return /^\/files\/[0-9a-f]{32}\.(jpg|png|gif|webp)$/.test(u.pathname) ? u.href : null;
  } catch {
    return null;
  }
}

// ---- connection state ----

const STATE_TEXT = {
  idle: 'Signed out',
  connecting: 'Connecting…',
  connected: 'Online',
  reconnecting: 'Reconnecting…',
  closed: 'Offline',
};

const TRANSPORT_TEXT = { websocket: 'WebSocket', jsonp: 'Long-poll', custom: 'Custom' };

function showState(state) {
  const el = $('state');
  el.dataset.state = state;
  let text = STATE_TEXT[state] ?? state;
  if (state === 'reconnecting' && reconnectInfo) {
    const s = Math.max(1, Math.round(reconnectInfo.delayMs / 1000));
    text = `Reconnecting (try ${reconnectInfo.attempt}, in ${s}s)…`;
  }
  $('state-text').textContent = text;
  const t = client?.transportName;
  $('transport').textContent = t ? TRANSPORT_TEXT[t] ?? t : '';
  $('transport').dataset.transport = t ?? '';
}

// ---- chat list ----

function previewText(last) {
  if (!last) return 'No messages yet';
  const body = last.kind === 'image' ? '📷 Picture' : last.body;
  return (last.own ? 'You: ' : '') + body;
}

function renderChats(chats) {
  const ul = $('chat-list');
  ul.replaceChildren();
  for (const c of chats) {
    const li = document.createElement('li');
    li.dataset.conv = c.conv;
    if (c.conv === current) li.classList.add('active');

    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'chat';
    btn.addEventListener('click', () => selectConv(c.conv));

    const av = document.createElement('span');
    av.className = 'avatar';
    av.setAttribute('aria-hidden', 'true');
    paintAvatar(av, c.conv);

    const main = document.createElement('span');
    main.className = 'chat-main';
    const top = document.createElement('span');
    top.className = 'chat-top';
    const name = document.createElement('span');
    name.className = 'chat-name';
    name.textContent = displayName(c.conv);
    const time = document.createElement('span');
    time.className = 'chat-time';
    time.textContent = c.last ? shortTime(c.last.ts) : '';
    top.append(name, time);

    const bottom = document.createElement('span');
    bottom.className = 'chat-bottom';
    const preview = document.createElement('span');
    preview.className = 'chat-preview';
    preview.textContent = previewText(c.last);
    bottom.append(preview);
    if (c.unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.textContent = c.unread > 99 ? '99+' : String(c.unread);
      badge.setAttribute('aria-label', `${c.unread} unread`);
      bottom.append(badge);
      li.classList.add('has-unread');
    }
    main.append(top, bottom);
    btn.append(av, main);
    li.append(btn);
    ul.append(li);
  }
  $('no-chats').hidden = chats.length > 0;
}

function updateTitle(total) {
  document.title = total > 0 ? `(${total}) imgw demo` : 'imgw demo';
}

// ---- conversation ----

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
}

function messageNode(m) {
  const li = document.createElement('li');
  li.className = `msg ${m.own ? 'own' : 'theirs'}`;
  if (m.id) li.dataset.id = m.id;
  if (m.cid) li.dataset.cid = m.cid;
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  const pic = pictureUrl(m);
  if (pic) {
    bubble.classList.add('picture');
    const img = document.createElement('img');
    img.alt = m.own ? 'Picture you sent' : `Picture from ${displayName(m.from ?? m.conv)}`;
    img.decoding = 'async';
    img.src = pic;
    // Keep the view at the bottom when a picture arrives and grows the list.
    img.addEventListener('load', () => {
      const ol = $('messages');
      if (m.own || ol.scrollHeight - ol.scrollTop - ol.clientHeight < img.height + 120) ol.scrollTop = ol.scrollHeight;
    });
    if (m.localPreview) bubble.append(img);
    else {
      const a = document.createElement('a');
      a.href = pic;
      a.target = '_blank';
      a.rel = 'noopener noreferrer';
      a.append(img);
      bubble.append(a);
    }
  } else {
    bubble.textContent = m.body;
  }
  const meta = document.createElement('div');
  meta.className = 'meta';
  const time = document.createElement('span');
  time.textContent = m.ts ? timeFmt.format(new Date(m.ts)) : '';
  meta.append(time);
  if (m.own) {
    const status = document.createElement('span');
    status.className = 'status';
    if (m.failed) {
      status.textContent = `Not sent (${m.failed})`;
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'link retry';
      retry.textContent = 'Retry';
      retry.addEventListener('click', () => deliver(m));
      meta.append(status, retry);
      li.classList.add('failed');
    } else if (!m.id) {
      status.textContent = m.file && !m.uploaded ? 'Uploading…' : 'Sending…';
      meta.append(status);
      li.classList.add('pending');
    } else if (m.queued) {
      status.textContent = 'Queued';
      meta.append(status);
    }
  }
  li.append(bubble, meta);
  return li;
}

/** Position of `m` in a sorted list: by id, own sends without an id at the end. */
function insertIndex(list, m) {
  if (!m.id) return list.length;
  let i = list.length;
  while (i > 0 && (!list[i - 1].id || compareIds(list[i - 1].id, m.id) > 0)) i--;
  return i;
}

/** Puts `m` (new or moved) at its place on screen, if its conversation is open. */
function place(m) {
  if (m.conv !== current) return;
  const ol = $('messages');
  const stick = nearBottom(ol);
  const node = messageNode(m);
  if (m.node && m.node.isConnected) m.node.remove();
  m.node = node;
  const list = conv(m.conv).list;
  const next = list[list.indexOf(m) + 1];
  if (next && next.node && next.node.isConnected) ol.insertBefore(node, next.node);
  else ol.append(node);
  if ((stick || m.own) && next === undefined) ol.scrollTop = ol.scrollHeight;
}

/** Redraws a message in place (status changes). */
function refresh(m) {
  if (m.conv !== current || !m.node || !m.node.isConnected) return place(m);
  const node = messageNode(m);
  m.node.replaceWith(node);
  m.node = node;
  return undefined;
}

/**
 * Adds a message unless the conversation has it already (same id, or same cid for an
 * own send shown before its ack). Returns the message kept.
 */
function addMessage(m) {
  const c = conv(m.conv);
  const old = (m.id && c.byKey.get(`i:${m.id}`)) || (m.cid && c.byKey.get(`c:${m.cid}`));
  if (old) {
    if (!old.id && m.id) settle(old, m);
    return old;
  }
  if (m.cid) c.byKey.set(`c:${m.cid}`, m);
  if (m.id) c.byKey.set(`i:${m.id}`, m);
  c.list.splice(insertIndex(c.list, m), 0, m);
  place(m);
  return m;
}

/** An own pending message got its id (ack, or its copy from history): move it in place. */
function settle(m, from) {
  const c = conv(m.conv);
  m.id = from.id;
  m.ts = from.ts ?? m.ts;
  if (from.kind === 'image' || m.kind === 'image') {
    m.kind = 'image';
    m.body = from.body ?? m.body;
  }
  m.queued = from.queued;
  c.byKey.set(`i:${m.id}`, m);
  c.list.splice(c.list.indexOf(m), 1);
  c.list.splice(insertIndex(c.list, m), 0, m);
  if (m.localPreview && m.kind === 'image') {
    URL.revokeObjectURL(m.localPreview);
    m.localPreview = null;
  }
  place(m);
}

function showOlder(c) {
  $('older').hidden = !(c && (c.more || c.loading));
  $('older-button').hidden = !!c?.loading;
  $('older-loading').hidden = !c?.loading;
}

/** Loads one page of history: the newest (first open) or the one before the oldest shown. */
async function loadHistory(key, older) {
  const c = conv(key);
  if (c.loading || !client) return;
  c.loading = true;
  if (key === current) showOlder(c);
  const first = c.list.find((m) => m.id);
  const ol = $('messages');
  try {
    const page = await client.history(key, older && first ? { before: first.id, limit: PAGE } : { limit: PAGE });
    // Scroll-back keeps what is on screen where it is: measure, insert, restore.
    const fromBottom = ol.scrollHeight - ol.scrollTop;
    for (const m of page.msgs) addMessage(m);
    if (key === current) {
      if (older) ol.scrollTop = ol.scrollHeight - fromBottom;
      else ol.scrollTop = ol.scrollHeight;
    }
    if (older || !c.loaded) c.more = page.more;
    c.loaded = true;
  } catch (err) {
    console.warn('imgw history', err);
  } finally {
    c.loading = false;
    if (key === current) {
      showOlder(c);
      markRead();
    }
  }
}

/** Sends the read marker for the open conversation when the page is seen. */
function markRead() {
  if (!client || !current || document.hidden || client.state !== 'connected') return;
  const c = conv(current);
  const last = [...c.list].reverse().find((m) => m.id);
  const entry = client.chatList().find((x) => x.conv === current);
  let id = last?.id ?? null;
  if (entry?.last?.id && (!id || compareIds(entry.last.id, id) > 0)) id = entry.last.id;
  if (!id || (c.readSent && compareIds(c.readSent, id) >= 0 && !(entry && entry.unread > 0))) return;
  c.readSent = id;
  client.read(current, id).catch((err) => {
    if (c.readSent === id) c.readSent = null;
    console.warn('imgw read', err);
  });
}

function selectConv(key) {
  if (!client) return;
  current = client.open(key);
  $('conv-empty').hidden = true;
  $('conv').hidden = false;
  paintAvatar($('conv-avatar'), current);
  $('conv-name').textContent = displayName(current);
  $('conv-jid').textContent = current;
  const ol = $('messages');
  const older = $('older');
  ol.replaceChildren(older);
  const c = conv(current);
  for (const m of c.list) {
    m.node = messageNode(m);
    ol.append(m.node);
  }
  showOlder(c);
  ol.scrollTop = ol.scrollHeight;
  renderChats(client.chatList());
  if (!c.loaded) loadHistory(current, false);
  else markRead();
  $('composer-text').focus();
}

/** Sends (or re-sends, same cid) a pending own message; pictures are uploaded first. */
function deliver(m) {
  m.failed = null;
  refresh(m);
  const sending = m.file && !m.uploaded
    ? client.uploadImage(m.file).then((up) => {
      m.uploaded = up.url;
      refresh(m);
      return client.send(m.to, up.url, { cid: m.cid, kind: 'image' });
    })
    : client.send(m.to, m.uploaded ?? m.body, { cid: m.cid, kind: m.kind });
  sending.then((ack) => {
    settle(m, { id: ack.id, ts: ack.ts, queued: ack.queued, kind: m.kind, body: m.uploaded ?? m.body });
    markRead();
  }, (err) => {
    m.failed = err.code || 'error';
    refresh(m);
  });
}

function sendCurrent() {
  const ta = $('composer-text');
  const body = ta.value.trim();
  if (!body || !current || !client) return;
  ta.value = '';
  autoGrow(ta);
  const m = { conv: current, to: current, body, kind: 'text', cid: newCid(), own: true, ts: Date.now(), id: null };
  addMessage(m);
  deliver(m);
}

function sendPictures(files) {
  if (!current || !client) return;
  for (const file of files) {
    const m = {
      conv: current, to: current, body: '', kind: 'image', cid: newCid(), own: true, ts: Date.now(), id: null,
      file, uploaded: null, localPreview: URL.createObjectURL(file),
    };
    addMessage(m);
    deliver(m);
  }
}

function autoGrow(ta) {
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 160)}px`;
}

// ---- sign in and out ----

function signIn(user, transport) {
  signOut();
  $('login-error').textContent = '';
  localStorage.setItem('imgw-demo-user', user);
  /** @type {import('../imgw.js').ImgwClientOptions} */
  const opts = { url: gatewayUrl(), user, sendTimeoutMs: 20000 };
  if (transport === 'jsonp' || transport === 'websocket') opts.transports = [transport];
  client = new ImgwClient(opts);
  const c = client;
  c.on('state', ({ state }) => c === client && showState(state));
  c.on('transport', () => c === client && showState(c.state));
  c.on('reconnecting', (info) => {
    reconnectInfo = info;
    showState('reconnecting');
  });
  c.on('open', (w) => {
    if (c !== client) return;
    reconnectInfo = null;
    myDomain = c.domain;
    $('login').hidden = true;
    $('app').hidden = false;
    $('me').hidden = false;
    $('me-name').textContent = w.user;
    $('me-name').title = w.jid;
    paintAvatar($('me-avatar'), w.jid);
    showState(c.state);
    renderChats(c.chatList());
    // The list and its unread counts come from the server, on every (re)connect.
    c.chats(50).catch((err) => console.warn('imgw chats', err));
    markRead();
  });
  c.on('message', (m) => {
    if (c !== client) return;
    addMessage(m);
    if (m.conv === current) markRead();
  });
  c.on('recovered', ({ reset }) => {
    // Too much was missed to replay: reload the conversation on screen.
    if (c !== client || !reset || !current) return;
    const cv = conv(current);
    cv.loaded = false;
    loadHistory(current, false);
  });
  c.on('chats', (list) => c === client && renderChats(list));
  c.on('unread', ({ total }) => c === client && updateTitle(total));
  c.on('authfailed', ({ error, reason }) => {
    if (c !== client) return;
    signOut();
    $('login-error').textContent = `Sign-in refused: ${error?.reason || error?.code || reason || 'authentication failed'}`;
  });
  c.on('error', (e) => {
    if (c === client && !e.cid) console.warn('imgw error', e);
  });
  c.connect().catch(() => {});
}

function signOut() {
  if (client) client.close();
  client = null;
  current = null;
  for (const c of convs.values()) for (const m of c.list) if (m.localPreview) URL.revokeObjectURL(m.localPreview);
  convs.clear();
  reconnectInfo = null;
  $('app').hidden = true;
  $('me').hidden = true;
  $('login').hidden = false;
  $('conv').hidden = true;
  $('conv-empty').hidden = false;
  $('chat-list').replaceChildren();
  $('messages').replaceChildren($('older'));
  updateTitle(0);
  showState('idle');
}

// ---- wiring ----

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const user = $('login-user').value.trim();
  if (user) signIn(user, $('login-transport').value);
});

$('signout').addEventListener('click', () => {
  signOut();
  $('login-user').focus();
});

$('new-chat').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('new-chat-peer');
  const peer = input.value.trim();
  if (!peer || /\s/.test(peer)) return;
  input.value = '';
  selectConv(peer);
});

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendCurrent();
});

$('composer-text').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendCurrent();
  }
});
$('composer-text').addEventListener('input', (ev) => autoGrow(ev.target));

$('attach').addEventListener('click', () => $('file-input').click());
$('file-input').addEventListener('change', (ev) => {
  const files = [...ev.target.files];
  ev.target.value = '';
  sendPictures(files);
});

// Scroll-back: reaching the top loads the page before the oldest message shown.
$('messages').addEventListener('scroll', () => {
  const c = current && conv(current);
  if (c && c.more && !c.loading && $('messages').scrollTop < 40) loadHistory(current, true);
});
$('older-button').addEventListener('click', () => current && loadHistory(current, true));

// Leaving the conversation view (tab hidden) means new messages there are unread again;
// coming back marks them read.
document.addEventListener('visibilitychange', () => {
  if (!client || !current) return;
  client.open(document.hidden ? null : current);
  markRead();
});

const remembered = params.get('user') ?? localStorage.getItem('imgw-demo-user');
if (remembered) $('login-user').value = remembered;
const forced = params.get('transport');
if (forced === 'jsonp' || forced === 'websocket') $('login-transport').value = forced;
showState('idle');
