// The imgw demo page: sign in as any user (development mode), a chat list with unread
// bubbles, one conversation at a time. All message text goes into the page through
// textContent, never as HTML.

import { ImgwClient, newCid } from '../client/imgw.js';

const $ = (id) => document.getElementById(id);

/** WebSocket URL next to this page: `/demo/` is served by the gateway, `/ws` too. */
function gatewayUrl() {
  const override = new URLSearchParams(location.search).get('ws');
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
 * Messages per conversation, kept only in this page (the protocol has no history yet).
 * @type {Map<string, {list: object[], byKey: Map<string, object>}>}
 */
const convs = new Map();

function conv(key) {
  let c = convs.get(key);
  if (!c) convs.set(key, (c = { list: [], byKey: new Map() }));
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

// ---- connection state ----

const STATE_TEXT = {
  idle: 'Signed out',
  connecting: 'Connecting…',
  connected: 'Online',
  reconnecting: 'Reconnecting…',
  closed: 'Offline',
};

function showState(state) {
  const el = $('state');
  el.dataset.state = state;
  let text = STATE_TEXT[state] ?? state;
  if (state === 'reconnecting' && reconnectInfo) {
    const s = Math.max(1, Math.round(reconnectInfo.delayMs / 1000));
    text = `Reconnecting (try ${reconnectInfo.attempt}, in ${s}s)…`;
  }
  $('state-text').textContent = text;
}

// ---- chat list ----

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
    preview.textContent = c.last ? (c.last.own ? 'You: ' : '') + c.last.body : 'No messages yet';
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
  bubble.textContent = m.body;
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
      status.textContent = 'Sending…';
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

/** Redraws one message in place if its conversation is on screen. */
function refresh(m) {
  if (m.conv !== current) return;
  const old = m.node;
  m.node = messageNode(m);
  if (old && old.isConnected) old.replaceWith(m.node);
  else {
    const ol = $('messages');
    const stick = nearBottom(ol);
    ol.append(m.node);
    if (stick || m.own) ol.scrollTop = ol.scrollHeight;
  }
}

function addMessage(m) {
  const c = conv(m.conv);
  const key = m.cid ? `c:${m.cid}` : `i:${m.id}`;
  if (c.byKey.has(key) || (m.id && c.byKey.has(`i:${m.id}`))) return;
  c.byKey.set(key, m);
  if (m.id) c.byKey.set(`i:${m.id}`, m);
  c.list.push(m);
  refresh(m);
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
  ol.replaceChildren();
  for (const m of conv(current).list) {
    m.node = messageNode(m);
    ol.append(m.node);
  }
  ol.scrollTop = ol.scrollHeight;
  renderChats(client.chats());
  $('composer-text').focus();
}

/** Sends (or re-sends, same cid) a pending own message. */
function deliver(m) {
  m.failed = null;
  refresh(m);
  client.send(m.to, m.body, { cid: m.cid }).then((ack) => {
    m.id = ack.id;
    m.ts = ack.ts;
    m.queued = ack.queued;
    conv(m.conv).byKey.set(`i:${ack.id}`, m);
    refresh(m);
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
  const m = { conv: current, to: current, body, cid: newCid(), own: true, ts: Date.now(), id: null };
  addMessage(m);
  deliver(m);
}

function autoGrow(ta) {
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 160)}px`;
}

// ---- sign in and out ----

function signIn(user) {
  signOut();
  $('login-error').textContent = '';
  localStorage.setItem('imgw-demo-user', user);
  client = new ImgwClient({ url: gatewayUrl(), user, sendTimeoutMs: 20000 });
  const c = client;
  c.on('state', ({ state }) => c === client && showState(state));
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
    renderChats(c.chats());
  });
  c.on('message', (m) => c === client && addMessage(m));
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
  convs.clear();
  reconnectInfo = null;
  $('app').hidden = true;
  $('me').hidden = true;
  $('login').hidden = false;
  $('conv').hidden = true;
  $('conv-empty').hidden = false;
  $('chat-list').replaceChildren();
  $('messages').replaceChildren();
  updateTitle(0);
  showState('idle');
}

// ---- wiring ----

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const user = $('login-user').value.trim();
  if (user) signIn(user);
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

// Leaving the conversation view (tab hidden) means new messages there are unread again.
document.addEventListener('visibilitychange', () => {
  if (!client || !current) return;
  client.open(document.hidden ? null : current);
});

const remembered = new URLSearchParams(location.search).get('user') ?? localStorage.getItem('imgw-demo-user');
if (remembered) $('login-user').value = remembered;
showState('idle');
