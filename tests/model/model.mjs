// A reference model of the chat semantics of docs/protocol.md: users, tabs, conversations,
// message ids, cids, read markers, unread counts, the open conversation, history pages,
// the chat list and recovery. No I/O: tests/model/driver.mjs feeds it the operations it
// runs against the real gateway and asks it what every tab must receive.
//
// Message ids and timestamps are the gateway's (the model learns them from acks); ids are
// BigInts here because they exceed 2^53. Everything else is computed from the operations
// alone, so a wrong answer from PostgreSQL, Redis or the router shows as a difference.

export const PREVIEW_CHARS = 200; // chat list preview: characters (code points) of the body
export const RECOVER_MAX = 5000;  // messages replayed after hello.last_id

const big = (x) => (typeof x === 'bigint' ? x : BigInt(x));
const max = (a, b) => (a > b ? a : b);

/** What an XML end-of-line pass does to a body carried through the XMPP server. */
export function viaXmpp(body) {
  return body.replace(/\r\n/g, '\n').replace(/\r/g, '\n');
}

export class ChatModel {
  /** @param {{ domain: string }} o  domain of the web users' JIDs (same-JID mode: the XMPP domain) */
  constructor({ domain }) {
    this.domain = domain;
    this.messages = [];           // every stored message, in the order the model learnt them
    this.byId = new Map();        // id text -> message
    this.convs = new Map();       // "a b" (user ids, sorted) -> messages sorted by id
    this.markers = new Map();     // "user|peer" -> BigInt read marker
    this.cids = new Map();        // "user|cid" -> message, for this gateway run (its memory)
    this.storedCids = new Map();  // "user|cid" -> message, for ever (the store's key)
    this.tabs = [];               // { user, open: peer user id or null, connected }
  }

  jid(user) { return `${user}@${this.domain}`; }
  convKey(a, b) { return a < b ? `${a} ${b}` : `${b} ${a}`; }
  conv(a, b) { return this.convs.get(this.convKey(a, b)) ?? []; }
  marker(user, peer) { return this.markers.get(`${user}|${peer}`) ?? 0n; }

  addTab(user) {
    this.tabs.push({ user, open: null, connected: false });
    return this.tabs.length - 1;
  }

  /** Tabs that receive live frames for user (connected, welcomed), except `except`. */
  liveTabs(user, except = -1) {
    const out = [];
    this.tabs.forEach((t, i) => { if (t.user === user && t.connected && i !== except) out.push(i); });
    return out;
  }

  // ---- sends ------------------------------------------------------------------------

  /**
   * What a send of cid by user is: a retry of a message the gateway still remembers
   * (acked again with its id, nothing else happens), or a new message. With
   * acrossRestart, a cid the store has from an earlier gateway run counts as a retry too
   * (docs/protocol.md promises it; issue 11 item 1).
   */
  sendKind(user, cid, { acrossRestart = false } = {}) {
    const m = this.cids.get(`${user}|${cid}`) ?? (acrossRestart ? this.storedCids.get(`${user}|${cid}`) : undefined);
    return m ? { retry: true, msg: m } : { retry: false };
  }

  /** Records a new message the gateway acknowledged with id and ts. Returns it. */
  addMessage({ from, to, body, kind = 'text', cid = null, id, ts }) {
    const m = { id: big(id), idText: String(id), from, to, body, kind, cid, ts: Number(ts), seq: this.messages.length };
    this.messages.push(m);
    this.byId.set(m.idText, m);
    const key = this.convKey(from, to);
    const list = this.convs.get(key) ?? [];
    list.push(m);
    list.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
    this.convs.set(key, list);
    if (cid) {
      this.cids.set(`${from}|${cid}`, m);
      this.storedCids.set(`${from}|${cid}`, m);
    }
    // Sending moves the sender's read marker to the message (you have seen what you answer).
    this.markers.set(`${from}|${to}`, max(this.marker(from, to), m.id));
    return m;
  }

  /** The gateway forgot its recent cids (restart). */
  forgetCids() { this.cids.clear(); }

  /** The msg frame that viewer (a user id) receives for m. */
  msgFrame(m, viewer, { open = false, recovered = false, live = false } = {}) {
    const own = m.from === viewer;
    const f = {
      op: 'msg', id: m.idText, conv: this.jid(own ? m.to : m.from), from: this.jid(m.from),
      to: this.jid(m.to), body: live && !own ? viaXmpp(m.body) : m.body, kind: m.kind, ts: m.ts, open,
    };
    if (own && m.cid) f.cid = m.cid;
    if (recovered) f.recovered = true;
    return f;
  }

  /**
   * Live frames for a new message: the sender's other tabs get it as sent (an echo, with
   * the cid), the recipient's tabs as the XMPP server delivered it (no cid; CR and CRLF
   * became LF). Returns [[tab, frame], ...].
   */
  deliveries(m, senderTab) {
    const out = [];
    for (const t of this.liveTabs(m.from, senderTab)) {
      out.push([t, this.msgFrame(m, m.from, { open: this.tabs[t].open === m.to, live: true })]);
    }
    if (m.to !== m.from) {
      for (const t of this.liveTabs(m.to)) {
        out.push([t, this.msgFrame(m, m.to, { open: this.tabs[t].open === m.from, live: true })]);
      }
    }
    return out;
  }

  ackFrame(m) { return { op: 'ack', cid: m.cid, id: m.idText, ts: m.ts, queued: false }; }

  // ---- queries ------------------------------------------------------------------------

  unread(user, peer) {
    const mk = this.marker(user, peer);
    return this.conv(user, peer).filter((m) => m.from === peer && m.id > mk).length;
  }

  /** The history frame: the newest `limit` messages below `before`, oldest first. */
  history(user, peer, before = null, limit = 50) {
    const b = before === null ? null : big(before);
    const all = this.conv(user, peer).filter((m) => b === null || m.id < b);
    const page = all.slice(Math.max(0, all.length - limit));
    return {
      op: 'history', with: this.jid(peer), msgs: page.map((m) => this.msgFrame(m, user)),
      more: page.length === limit,
    };
  }

  /** The chats frame: conversations by last message, newest first, at most limit. */
  chats(user, limit = 50) {
    const entries = [];
    for (const [key, list] of this.convs) {
      const [a, b] = key.split(' ');
      if (a !== user && b !== user) continue;
      const peer = a === user ? b : a;
      const last = list[list.length - 1];
      entries.push({
        peer: this.jid(peer), last_id: last.idText, ts: last.ts, last_sender: this.jid(last.from),
        kind: last.kind, preview: [...last.body].slice(0, PREVIEW_CHARS).join(''),
        unread: this.unread(user, peer), _id: last.id,
      });
    }
    entries.sort((x, y) => (x._id > y._id ? -1 : x._id < y._id ? 1 : 0));
    const shown = entries.slice(0, limit).map(({ _id, ...e }) => e);
    return { op: 'chats', chats: shown, unread_total: shown.reduce((s, e) => s + e.unread, 0) };
  }

  /**
   * read: the marker moves forward onto the newest message of the conversation at or
   * below id (clamped; never back). Returns { frame, moved }: a move is told to every
   * tab of the user, no move only to the asking tab. No conversation: id "0", unread 0.
   */
  read(user, peer, id) {
    const list = this.conv(user, peer);
    const upto = big(id);
    let target = null;
    for (const m of list) if (m.id <= upto) target = m.id;
    const mk = this.marker(user, peer);
    const moved = target !== null && target > mk;
    if (moved) this.markers.set(`${user}|${peer}`, target);
    const now = moved ? target : mk;
    return {
      moved,
      frame: { op: 'read', with: this.jid(peer), id: list.length ? now.toString() : '0', unread: list.length ? this.unread(user, peer) : 0 },
    };
  }

  /** Messages of user's conversations after `after`, ascending (what recovery replays). */
  missed(user, after) {
    const a = big(after);
    return this.messages
      .filter((m) => (m.from === user || m.to === user) && m.id > a)
      .sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  }

  /** The frames a session recovering after `after` receives (nothing arriving live). */
  recovery(user, after) {
    const list = this.missed(user, after).slice(0, RECOVER_MAX);
    return [
      ...list.map((m) => this.msgFrame(m, user, { recovered: true })),
      { op: 'recovered', count: list.length, reset: list.length >= RECOVER_MAX },
    ];
  }

  open(tab, peer) {
    this.tabs[tab].open = peer;
    return { op: 'opened', with: peer === null ? null : this.jid(peer) };
  }

  welcome(user) { return { op: 'welcome', user, jid: this.jid(user) }; }
}
