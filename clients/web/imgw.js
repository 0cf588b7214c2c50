// imgw browser client: one ES module, no runtime dependencies.
//
// It speaks the imgw WebSocket JSON protocol (docs/protocol.md, version 1): authenticates
// with a ticket (or a bare user name in development mode), sends messages with a client id
// that stays the same across retries, reconnects with capped exponential backoff and full
// jitter, and keeps per-conversation unread counts for a chat list.
//
// The same file runs in browsers and in Node 20; Node has no global WebSocket before
// version 22, so pass one (for example the `ws` package's) in the options.
//
//   import { ImgwClient } from '/client/imgw.js';
//   const c = new ImgwClient({ url: 'wss://chat.example/ws', ticket: () => fetchTicket() });
//   c.on('message', (m) => show(m));
//   await c.connect();
//   await c.send('bob', 'hello');

/** Protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;

/** WebSocket subprotocol named by the protocol document. */
export const SUBPROTOCOL = 'imgw.v1';

/** Close codes with a fixed meaning for the client. */
export const CLOSE_AUTH_FAILED = 4401;

/**
 * @typedef {object} TransportHandlers
 * @property {() => void} onOpen             the transport can carry frames now
 * @property {(text: string) => void} onMessage  one text frame from the server
 * @property {(code: number, reason: string) => void} onClose
 *   the transport is gone; called at most once, also when it never opened
 */

/**
 * A bidirectional channel of text frames. WebSocket is the only one implemented; a SockJS
 * or long-poll transport only has to provide these two methods and call the handlers.
 * @typedef {object} Transport
 * @property {(text: string) => void} send  queue one text frame; no-op once closed
 * @property {(code?: number, reason?: string) => void} close
 *   start closing; onClose follows (asynchronously or not)
 */

/**
 * Opens a transport to `url`. Must not call a handler synchronously.
 * @typedef {(url: string, handlers: TransportHandlers) => Transport} TransportFactory
 */

/**
 * @typedef {object} BackoffOptions
 * @property {number} [minMs=250]    ceiling of the first retry's delay
 * @property {number} [maxMs=30000]  no delay ever exceeds this
 */

/**
 * @typedef {object} ImgwClientOptions
 * @property {string} url  WebSocket URL of the gateway, e.g. `wss://host/ws`
 * @property {string | (() => string | Promise<string>)} [ticket]
 *   a ticket from the site's backend, or a function called before every (re)connect so an
 *   expired ticket can be replaced
 * @property {string} [user]  development mode only: sign in as this user without a ticket
 * @property {any} [WebSocket]  WebSocket constructor; default `globalThis.WebSocket`
 * @property {TransportFactory} [transport]  replaces the WebSocket transport altogether
 * @property {string | null} [protocol='imgw.v1']  subprotocol to ask for; null for none
 * @property {BackoffOptions} [backoff]
 * @property {number} [sendTimeoutMs=0]  reject a send not acknowledged in this time
 *   (0: wait across any number of reconnects until close())
 * @property {number} [connectTimeoutMs=10000]  give up on a connection attempt that has
 *   not been welcomed by then and retry
 * @property {number} [pingIntervalMs=25000]  ping a quiet connection this often (0: never)
 * @property {number} [pongTimeoutMs=10000]  reconnect when nothing arrives this long after
 *   a ping: the connection is half-open
 * @property {string} [lastId]  id of the last message already seen (e.g. kept from an
 *   earlier page), sent as `last_id` in `hello`
 * @property {() => number} [random]  source of uniform numbers in [0, 1) for jitter
 */

/**
 * A message as emitted by the `message` event: the server's `msg` frame with `conv` in
 * lower case and `own` added.
 * @typedef {object} ImgwMessage
 * @property {string} id    server message id (decimal string)
 * @property {string} conv  the peer's bare JID, lower case
 * @property {string} from
 * @property {string} to
 * @property {string} body
 * @property {string} kind
 * @property {number} ts    milliseconds since the epoch
 * @property {string} [cid] present on copies of the user's own sends
 * @property {boolean} own  true when the user sent it (from this or another session)
 */

/**
 * @typedef {object} ImgwAck
 * @property {string} cid
 * @property {string} id
 * @property {number} ts
 * @property {boolean} queued   the gateway's XMPP link was down; the message waits there
 * @property {ImgwMessage} message  the sent message as it now stands in the conversation
 */

/**
 * @typedef {object} ChatEntry
 * @property {string} conv  peer's bare JID, lower case
 * @property {ImgwMessage | null} last  most recent message, null for a chat just opened
 * @property {number} unread
 */

/**
 * @typedef {'idle'|'connecting'|'connected'|'reconnecting'|'closed'} ClientState
 */

/**
 * Delay before reconnect attempt `attempt` (1 for the first retry): full jitter, that is a
 * uniform pick in [0, ceiling) where the ceiling doubles per attempt from `minMs` and is
 * capped at `maxMs`. Spreading retries over the whole range keeps thousands of tabs from
 * reconnecting in lockstep after a gateway restart.
 * @param {number} attempt  1, 2, ...
 * @param {BackoffOptions} [opts]
 * @param {() => number} [random]
 * @returns {number} whole milliseconds
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const ceiling = backoffCeiling(attempt, opts);
  return Math.min(ceiling, Math.floor(random() * ceiling));
}

/**
 * Upper bound of backoffDelay() for `attempt`.
 * @param {number} attempt
 * @param {BackoffOptions} [opts]
 * @returns {number}
 */
export function backoffCeiling(attempt, opts = {}) {
  const minMs = Math.max(1, opts.minMs ?? 250);
  const maxMs = Math.max(minMs, opts.maxMs ?? 30000);
  // Cap the exponent first so a long outage cannot overflow to Infinity.
  const exp = Math.min(Math.max(0, attempt - 1), 30);
  return Math.min(maxMs, minMs * 2 ** exp);
}

/**
 * Bare JID of a peer given as a user id or a JID, lower case: `bob` becomes
 * `bob@<domain>`, a resource is dropped. XMPP compares local parts and domains without
 * regard to case, so lower case makes one key per conversation.
 * @param {string} peer
 * @param {string} domain  the users' domain (the part after @ in the client's own JID)
 * @returns {string}
 */
export function bareJid(peer, domain) {
  let s = String(peer).trim();
  const slash = s.indexOf('/');
  if (slash >= 0) s = s.slice(0, slash);
  if (!s.includes('@') && domain) s = `${s}@${domain}`;
  return s.toLowerCase();
}

/**
 * Transport factory over a WebSocket constructor with the browser API
 * (onopen/onmessage/onclose, `ws` in Node provides the same).
 * @param {any} WebSocketCtor
 * @param {string | null} [protocol]
 * @returns {TransportFactory}
 */
export function webSocketTransport(WebSocketCtor, protocol = SUBPROTOCOL) {
  if (typeof WebSocketCtor !== 'function') {
    throw new TypeError('imgw: no WebSocket constructor; pass options.WebSocket');
  }
  return (url, h) => {
    const ws = protocol ? new WebSocketCtor(url, protocol) : new WebSocketCtor(url);
    let closed = false;
    const finish = (code, reason) => {
      if (closed) return;
      closed = true;
      h.onClose(code, reason);
    };
    ws.onopen = () => h.onOpen();
    ws.onmessage = (ev) => {
      // The protocol only uses text frames; a binary frame is a server bug, ignore it.
      if (typeof ev.data === 'string') h.onMessage(ev.data);
    };
    // 'error' is always followed by 'close' in both browsers and ws.
    ws.onerror = () => {};
    ws.onclose = (ev) => finish(ev.code ?? 1006, ev.reason ?? '');
    return {
      send(text) {
        if (!closed && ws.readyState === 1) ws.send(text);
      },
      close(code = 1000, reason = '') {
        try {
          ws.close(code, reason);
        } catch {
          // Custom codes outside 1000/3000-4999 throw; fall back to a plain close.
          ws.close();
        }
      },
    };
  };
}

/** Compares two decimal id strings without converting them (they may exceed 2^53). */
export function compareIds(a, b) {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A fresh client id: 32 hex digits from the best random source at hand. Applications that
 * want to show a send before its ack can make the cid themselves and pass it to send().
 * @returns {string}
 */
export function newCid() {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const b = c.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  let s = '';
  while (s.length < 32) s += Math.floor(Math.random() * 2 ** 32).toString(16).padStart(8, '0');
  return s;
}

/** Error raised for rejected sends and failed connects; `code` is the protocol's code. */
export class ImgwError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {string} [cid]
   */
  constructor(code, message, cid) {
    super(message);
    this.name = 'ImgwError';
    this.code = code;
    if (cid !== undefined) this.cid = cid;
  }
}

/**
 * Error codes that mean "authentication failed". The server follows them with close code
 * 4401; the client also stops when that close code is lost on the way (a proxy, or a
 * server that drops the TCP connection without a close frame), since retrying the same
 * credentials cannot succeed.
 */
const AUTH_ERRORS = new Set(['bad_hello', 'bad_ticket', 'expired_ticket', 'not_authenticated']);

/** How many message ids to remember for dropping duplicates after a reconnect. */
const SEEN_IDS = 512;

/**
 * The client. Events (subscribe with on(), which returns an unsubscribe function):
 *  - `state` {state, prev}
 *  - `open` the welcome frame plus {reconnected}
 *  - `message` ImgwMessage
 *  - `ack` ImgwAck
 *  - `error` an error frame from the server {code, reason, cid?}
 *  - `close` {code, reason, reconnect}
 *  - `reconnecting` {attempt, delayMs}
 *  - `authfailed` {code, reason, error}
 *  - `opened` {with}
 *  - `unread` {conv, count, total}
 *  - `chats` ChatEntry[] (most recent first)
 */
export class ImgwClient {
  /** @param {ImgwClientOptions} options */
  constructor(options) {
    if (!options || typeof options.url !== 'string') throw new TypeError('imgw: options.url is required');
    if (options.ticket == null && options.user == null) {
      throw new TypeError('imgw: options.ticket or options.user (dev mode) is required');
    }
    this.url = options.url;
    this._ticket = options.ticket;
    this._user = options.user;
    this._backoff = { minMs: options.backoff?.minMs ?? 250, maxMs: options.backoff?.maxMs ?? 30000 };
    this._sendTimeoutMs = options.sendTimeoutMs ?? 0;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this._pingIntervalMs = options.pingIntervalMs ?? 25000;
    this._pongTimeoutMs = options.pongTimeoutMs ?? 10000;
    this._random = options.random ?? Math.random;
    /** @type {TransportFactory} */
    this._factory = options.transport
      ?? webSocketTransport(options.WebSocket ?? globalThis.WebSocket, options.protocol === undefined ? SUBPROTOCOL : options.protocol);

    /** @type {ClientState} */
    this.state = 'idle';
    /** Own bare JID and session id, from the last welcome. */
    this.jid = null;
    this.session = null;
    /** Id of the newest message seen; sent as `last_id` on reconnect. */
    this.lastId = options.lastId ?? null;

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** Unacknowledged sends, in send order. @type {Map<string, any>} */
    this._outbox = new Map();
    /** @type {Map<string, ChatEntry>} */
    this._chats = new Map();
    this._openConv = null;
    this._seen = new Set();
    this._seq = 0; // orders the chat list by latest activity
    this._attempt = 0;
    this._welcomed = false; // at least one welcome so far
    this._userClosed = false;
    this._transport = null;
    this._gen = 0; // bumps per transport so late events of an old one are ignored
    this._live = false; // welcomed on the current transport
    this._retryTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._lastError = null;
    this._authError = null; // an authentication error frame on the current transport
    this._connectWaiters = [];
  }

  // ---- events ----

  /**
   * @param {string} name
   * @param {Function} fn
   * @returns {() => void} unsubscribes
   */
  on(name, fn) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => this.off(name, fn);
  }

  /** @param {string} name @param {Function} fn */
  off(name, fn) {
    this._listeners.get(name)?.delete(fn);
  }

  _emit(name, arg) {
    const set = this._listeners.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (err) {
        // A broken listener must not break the connection logic or other listeners.
        if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
        else console.error(err);
      }
    }
  }

  _setState(state) {
    if (state === this.state) return;
    const prev = this.state;
    this.state = state;
    this._emit('state', { state, prev });
  }

  // ---- connection ----

  /**
   * Starts connecting (again, after close()). Resolves with the welcome frame once signed
   * in, retrying with backoff meanwhile; rejects when authentication fails or close() is
   * called first.
   * @returns {Promise<object>}
   */
  connect() {
    const p = new Promise((resolve, reject) => this._connectWaiters.push({ resolve, reject }));
    if (this.state === 'connected') {
      this._settleWaiters(null, this._welcome);
      return p;
    }
    if (this.state === 'idle' || this.state === 'closed') {
      this._userClosed = false;
      this._attempt = 0;
      this._open();
    }
    return p;
  }

  /**
   * Closes for good: no reconnect. Pending sends are rejected with code `closed`.
   * @param {number} [code=1000]
   * @param {string} [reason]
   */
  close(code = 1000, reason = '') {
    this._userClosed = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const t = this._transport;
    this._dropTransport();
    if (t) t.close(code, reason);
    const wasOpen = this.state !== 'idle' && this.state !== 'closed';
    this._setState('closed');
    this._failAll('closed', 'client closed');
    this._settleWaiters(new ImgwError('closed', 'client closed'));
    if (wasOpen) this._emit('close', { code, reason, reconnect: false });
  }

  async _open() {
    const gen = ++this._gen;
    this._setState('connecting');
    let ticket;
    try {
      ticket = typeof this._ticket === 'function' ? await this._ticket() : this._ticket;
    } catch (err) {
      if (gen !== this._gen || this._userClosed) return;
      this._emit('error', { code: 'ticket', reason: String(err?.message ?? err) });
      this._scheduleRetry();
      return;
    }
    if (gen !== this._gen || this._userClosed) return;
    this._authError = null;
    let t;
    try {
      t = this._factory(this.url, {
        onOpen: () => gen === this._gen && this._onTransportOpen(ticket),
        onMessage: (text) => gen === this._gen && this._onFrame(text),
        onClose: (code, reason) => gen === this._gen && this._onTransportClose(code, reason),
      });
    } catch (err) {
      // A bad URL throws synchronously in browsers; treat it like a failed connection.
      this._emit('error', { code: 'transport', reason: String(err?.message ?? err) });
      this._scheduleRetry();
      return;
    }
    this._transport = t;
    this._connectTimer = setTimeout(() => {
      if (gen !== this._gen || this._live) return;
      this._kill(4000, 'connect timeout');
    }, this._connectTimeoutMs);
  }

  _onTransportOpen(ticket) {
    /** @type {Record<string, any>} */
    const hello = { op: 'hello', v: PROTOCOL_VERSION };
    if (this._ticket != null) hello.ticket = ticket;
    else hello.user = this._user;
    if (this.lastId != null) hello.last_id = this.lastId;
    this._write(hello);
  }

  /** Abandons the current transport and handles it as a lost connection. */
  _kill(code, reason) {
    const t = this._transport;
    if (!t) return;
    this._gen++;
    t.close(code, reason);
    this._onTransportClose(1006, reason);
  }

  _dropTransport() {
    this._gen++;
    this._transport = null;
    this._live = false;
    clearTimeout(this._connectTimer);
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._connectTimer = this._pingTimer = this._pongTimer = null;
  }

  _onTransportClose(code, reason) {
    this._dropTransport();
    if (this._userClosed) return;
    const authError = this._authError;
    this._authError = null;
    if (code === CLOSE_AUTH_FAILED || authError) {
      const error = authError ?? this._lastError;
      this._setState('closed');
      this._emit('close', { code, reason, reconnect: false });
      this._emit('authfailed', { code, reason, error });
      const err = new ImgwError(error?.code ?? 'auth_failed', error?.reason ?? (reason || 'authentication failed'));
      this._failAll('auth_failed', err.message);
      this._settleWaiters(err);
      return;
    }
    this._emit('close', { code, reason, reconnect: true });
    this._scheduleRetry();
  }

  _scheduleRetry() {
    this._attempt++;
    const delayMs = backoffDelay(this._attempt, this._backoff, this._random);
    this._setState('reconnecting');
    this._emit('reconnecting', { attempt: this._attempt, delayMs });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._userClosed) this._open();
    }, delayMs);
  }

  _settleWaiters(err, value) {
    const w = this._connectWaiters;
    this._connectWaiters = [];
    for (const { resolve, reject } of w) err ? reject(err) : resolve(value);
  }

  _write(frame) {
    this._transport?.send(JSON.stringify(frame));
  }

  // Liveness: after each frame from the server wait pingIntervalMs, then ping and expect
  // any frame within pongTimeoutMs. A NAT that silently forgot the connection is only
  // noticed this way; TCP alone can take many minutes.
  _armPing() {
    if (!this._pingIntervalMs || !this._live) return;
    clearTimeout(this._pingTimer);
    clearTimeout(this._pongTimer);
    this._pongTimer = null;
    const gen = this._gen;
    this._pingTimer = setTimeout(() => {
      if (gen !== this._gen) return;
      this._write({ op: 'ping', t: Date.now() });
      this._pongTimer = setTimeout(() => gen === this._gen && this._kill(4000, 'ping timeout'), this._pongTimeoutMs);
    }, this._pingIntervalMs);
  }

  // ---- frames from the server ----

  _onFrame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      return; // not ours to fix; the protocol promises JSON objects
    }
    if (!f || typeof f !== 'object') return;
    this._armPing();
    switch (f.op) {
      case 'welcome': return this._onWelcome(f);
      case 'msg': return this._onMsg(f);
      case 'ack': return this._onAck(f);
      case 'error': return this._onError(f);
      case 'opened': return this._emit('opened', { with: f.with ?? null });
      case 'pong': return this._emit('pong', f);
      default: return undefined; // newer server, unknown frame: ignore
    }
  }

  _onWelcome(f) {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    const reconnected = this._welcomed;
    this._welcomed = true;
    this._live = true;
    this._attempt = 0;
    this._lastError = null;
    this.jid = typeof f.jid === 'string' ? f.jid.toLowerCase() : null;
    this.session = f.session ?? null;
    this._welcome = f;
    // A user id opened before the first welcome could not be expanded to a JID yet.
    if (this._openConv && !this._openConv.includes('@')) this._openConv = bareJid(this._openConv, this.domain);
    // Re-send everything not acknowledged, with the same cid, in the original order: the
    // gateway recognises a cid it has stored and does not store the message twice.
    for (const e of this._outbox.values()) this._write(e.frame);
    if (this._openConv) this._write({ op: 'open', with: this._openConv });
    this._armPing();
    this._setState('connected');
    this._emit('open', { ...f, reconnected });
    this._settleWaiters(null, f);
  }

  get domain() {
    const at = this.jid ? this.jid.indexOf('@') : -1;
    return at >= 0 ? this.jid.slice(at + 1) : '';
  }

  _onMsg(f) {
    if (typeof f.id !== 'string' || typeof f.conv !== 'string') return;
    if (this._seen.has(f.id)) return; // re-delivered after a reconnect
    this._seen.add(f.id);
    if (this._seen.size > SEEN_IDS) this._seen.delete(this._seen.values().next().value);
    if (this.lastId == null || compareIds(f.id, this.lastId) > 0) this.lastId = f.id;
    const conv = f.conv.toLowerCase();
    const own = typeof f.from === 'string' && this.jid != null && bareJid(f.from, '') === this.jid;
    /** @type {ImgwMessage} */
    const m = { ...f, conv, own };
    this._emit('message', m);
    this._record(m, !own && conv !== this._openConv);
  }

  _onAck(f) {
    const e = this._outbox.get(f.cid);
    if (!e) return; // an ack for a send that timed out, or a duplicate
    this._outbox.delete(f.cid);
    clearTimeout(e.timer);
    const conv = bareJid(e.frame.to, this.domain);
    /** @type {ImgwMessage} */
    const message = {
      id: String(f.id), conv, from: this.jid ?? '', to: conv, body: e.frame.body,
      kind: e.frame.kind ?? 'text', ts: typeof f.ts === 'number' ? f.ts : Date.now(), cid: f.cid, own: true,
    };
    if (typeof f.id === 'string') {
      this._seen.add(f.id);
      if (this._seen.size > SEEN_IDS) this._seen.delete(this._seen.values().next().value);
    }
    /** @type {ImgwAck} */
    const ack = { cid: f.cid, id: message.id, ts: message.ts, queued: !!f.queued, message };
    e.resolve(ack);
    this._emit('ack', ack);
    this._record(message, false);
  }

  _onError(f) {
    const error = { code: String(f.code ?? 'unknown'), reason: String(f.reason ?? '') };
    if (typeof f.cid === 'string') error.cid = f.cid;
    this._lastError = error;
    if (!this._live && AUTH_ERRORS.has(error.code)) this._authError = error;
    if (error.cid !== undefined) {
      const e = this._outbox.get(error.cid);
      if (e) {
        this._outbox.delete(error.cid);
        clearTimeout(e.timer);
        e.reject(new ImgwError(error.code, error.reason || error.code, error.cid));
      }
    }
    this._emit('error', error);
  }

  // ---- sending ----

  /**
   * Sends `body` to `to` (a user id or a bare JID). The send waits in the outbox until the
   * gateway acknowledges it and is re-sent with the same cid after every reconnect.
   * @param {string} to
   * @param {string} body
   * @param {{cid?: string, kind?: string}} [opts]  pass the cid of a failed send to retry
   *   it without risking a duplicate
   * @returns {Promise<ImgwAck>} rejects with an ImgwError: the server's code (for example
   *   `bad_recipient`, `queue_full`), `timeout`, `closed` or `auth_failed`
   */
  send(to, body, opts = {}) {
    if (this._userClosed || this.state === 'closed') {
      return Promise.reject(new ImgwError('closed', 'client closed'));
    }
    const cid = opts.cid ?? newCid();
    if (this._outbox.has(cid)) return this._outbox.get(cid).promise;
    /** @type {Record<string, any>} */
    const frame = { op: 'send', to: String(to), body: String(body), cid };
    if (opts.kind) frame.kind = opts.kind;
    const entry = { frame, resolve: null, reject: null, timer: null, promise: null };
    entry.promise = new Promise((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    if (this._sendTimeoutMs > 0) {
      entry.timer = setTimeout(() => {
        if (this._outbox.get(cid) !== entry) return;
        this._outbox.delete(cid);
        entry.reject(new ImgwError('timeout', 'no acknowledgement in time', cid));
      }, this._sendTimeoutMs);
    }
    this._outbox.set(cid, entry);
    if (this._live) this._write(frame);
    return entry.promise;
  }

  /** Unacknowledged sends, oldest first. @returns {{cid: string, to: string, body: string}[]} */
  get outbox() {
    return [...this._outbox.values()].map(({ frame }) => ({ cid: frame.cid, to: frame.to, body: frame.body }));
  }

  _failAll(code, reason) {
    const entries = [...this._outbox.values()];
    this._outbox.clear();
    for (const e of entries) {
      clearTimeout(e.timer);
      e.reject(new ImgwError(code, reason, e.frame.cid));
    }
  }

  // ---- conversations and unread counts ----

  /**
   * Marks `peer` (user id or JID) as the conversation on screen, or none with null: its
   * unread count drops to zero and the gateway is told (it flags messages with `open`).
   * @param {string | null} peer
   * @returns {string | null} the conversation key (lower-case bare JID)
   */
  open(peer) {
    const conv = peer == null || peer === '' ? null : bareJid(peer, this.domain);
    this._openConv = conv;
    if (this._live) this._write({ op: 'open', with: conv });
    // Before the first welcome a bare user id has no domain yet; the chat list waits.
    if (conv && conv.includes('@')) {
      let c = this._chats.get(conv);
      if (!c) {
        c = { conv, last: null, unread: 0, at: ++this._seq };
        this._chats.set(conv, c);
        this._emitChats();
      }
      if (c.unread) {
        c.unread = 0;
        this._emit('unread', { conv, count: 0, total: this.totalUnread });
        this._emitChats();
      }
    }
    return conv;
  }

  /** The open conversation's key, or null. */
  get openConversation() {
    return this._openConv;
  }

  /** Sum of all unread counts. */
  get totalUnread() {
    let n = 0;
    for (const c of this._chats.values()) n += c.unread;
    return n;
  }

  /** @param {string} peer @returns {number} */
  unreadCount(peer) {
    return this._chats.get(bareJid(peer, this.domain))?.unread ?? 0;
  }

  /** Conversations, most recent first. @returns {ChatEntry[]} */
  chats() {
    return [...this._chats.values()]
      .sort((a, b) => b.at - a.at)
      .map(({ conv, last, unread }) => ({ conv, last, unread }));
  }

  _record(m, countUnread) {
    let c = this._chats.get(m.conv);
    if (!c) this._chats.set(m.conv, (c = { conv: m.conv, last: null, unread: 0, at: 0 }));
    // Keep the newest message as `last` even if frames arrive out of order. Recency is the
    // order of arrival here, not `ts`: the server's clock and this one may disagree.
    if (!c.last || compareIds(m.id, c.last.id) >= 0) c.last = m;
    c.at = ++this._seq;
    if (countUnread) {
      c.unread++;
      this._emit('unread', { conv: m.conv, count: c.unread, total: this.totalUnread });
    }
    this._emitChats();
  }

  _emitChats() {
    this._emit('chats', this.chats());
  }
}

export default ImgwClient;
