// imgw browser client: one ES module, no runtime dependencies.
//
// It speaks the imgw JSON protocol (docs/protocol.md, version 1): authenticates with a
// ticket (or a bare user name in development mode), sends messages with a client id that
// stays the same across retries, reconnects with capped exponential backoff and full
// jitter, recovers what it missed with `last_id`, loads history and the chat list, keeps
// unread counts in step with the server, and uploads pictures.
//
// Transports: WebSocket first; when WebSocket is missing or cannot connect, the JSONP
// long-poll API of docs/http-api.md carries the same frames behind the same client API.
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
 * A bidirectional channel of text frames: WebSocket, or the JSONP long-poll API dressed
 * up as one (jsonpTransport). A transport only has to provide these methods and call the
 * handlers.
 * @typedef {object} Transport
 * @property {(text: string) => void} send  queue one text frame; no-op once closed
 * @property {(code?: number, reason?: string) => void} close
 *   start closing; onClose follows (asynchronously or not)
 * @property {string} [token]  the HTTP API token of the session, when the transport has one
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
 * @typedef {'websocket'|'jsonp'} TransportName
 */

/**
 * @typedef {object} ImgwClientOptions
 * @property {string} url  WebSocket URL of the gateway, e.g. `wss://host/ws`
 * @property {string | (() => string | Promise<string>)} [ticket]
 *   a ticket from the site's backend, or a function called before every (re)connect so an
 *   expired ticket can be replaced
 * @property {string} [user]  development mode only: sign in as this user without a ticket
 * @property {any} [WebSocket]  WebSocket constructor; default `globalThis.WebSocket`
 * @property {TransportFactory} [transport]  replaces the built-in transports altogether
 * @property {TransportName[]} [transports=['websocket','jsonp']]  built-in transports in
 *   order of preference; `['jsonp']` forces the long-poll fallback
 * @property {number} [fallbackAfter=2]  WebSocket attempts that fail before ever opening
 *   after which the client moves to the next transport
 * @property {string} [apiUrl]  base of the HTTP API, default: `url` with http(s) and the
 *   last path segment replaced by `api/` (`wss://h/ws` → `https://h/api/`)
 * @property {string} [uploadUrl]  default: `upload` next to `/api/` (`https://h/upload`)
 * @property {'script'|'fetch'} [jsonp]  how the long-poll transport calls the API:
 *   `<script>` JSONP (default in browsers) or fetch with CORS (default without a DOM)
 * @property {typeof fetch} [fetch]  fetch implementation (default `globalThis.fetch`)
 * @property {number} [pollTimeoutS=25]  long-poll wait the gateway is asked for (0-25)
 * @property {string | null} [protocol='imgw.v1']  subprotocol to ask for; null for none
 * @property {BackoffOptions} [backoff]
 * @property {number} [sendTimeoutMs=0]  reject a send not acknowledged in this time
 *   (0: wait across any number of reconnects until close())
 * @property {number} [requestTimeoutMs=15000]  reject a history/chats/read request not
 *   answered in this time (0: never)
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
 * A message as emitted by the `message` event and returned by history(): the server's
 * `msg` object with `conv` in lower case and `own` added.
 * @typedef {object} ImgwMessage
 * @property {string} id    server message id (decimal string)
 * @property {string} conv  the peer's bare JID, lower case
 * @property {string} from
 * @property {string} to
 * @property {string} body  the text, or for kind `image` the picture's URL
 * @property {string} kind  `text` or `image`
 * @property {number} ts    milliseconds since the epoch
 * @property {string} [cid] present on copies of the user's own sends
 * @property {boolean} [recovered]  replayed after a reconnect (hello.last_id)
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
 * @property {ImgwMessage | null} last  most recent message known, null for a chat just
 *   opened; from a `chats` frame it is built from the summary (`id`, `from`, `body` =
 *   the preview, `kind`, `ts`, `own`)
 * @property {number} unread
 */

/**
 * The server's `chats` frame, as chats() resolves it.
 * @typedef {object} ChatsFrame
 * @property {{peer: string, last_id: string, ts: number, last_sender: string,
 *   kind: string, preview: string, unread: number}[]} chats  most recent first
 * @property {number} unread_total
 */

/**
 * @typedef {object} UploadResult
 * @property {string} url    where the picture is served (`.../files/NAME.png`)
 * @property {string} kind   `image`
 * @property {number} bytes
 * @property {string} type   detected MIME type
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
 * The HTTP API base next to a WebSocket URL: `wss://h/chat/ws` → `https://h/chat/api/`.
 * @param {string} wsUrl
 * @returns {string}
 */
export function apiUrlFor(wsUrl) {
  const u = new URL(wsUrl);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  u.search = '';
  u.hash = '';
  return new URL('api/', u).href;
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

// ---- HTTP helpers (JSONP transport, upload) ----

/** A network-level failure of an HTTP call (no answer, no JSON): the session may be fine. */
class NetworkError extends Error {}

let jsonpSeq = 0;

/**
 * One GET to the API through a `<script>` element (JSONP). Works cross-origin without
 * CORS and in browsers without fetch. The answer is the argument of the callback; a
 * script that fails to load or never calls back is a NetworkError.
 * @param {string} url  complete URL without `callback`
 * @param {number} timeoutMs
 * @param {Set<() => void>} aborts  registry of cancel functions, so close() can stop waits
 * @returns {Promise<any>}
 */
function scriptJsonp(url, timeoutMs, aborts) {
  const g = /** @type {any} */ (globalThis);
  const ns = g.__imgwJsonp || (g.__imgwJsonp = {});
  const name = `c${++jsonpSeq}`;
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    let timer = null;
    const done = (fn, v) => {
      clearTimeout(timer);
      aborts.delete(cancel);
      script.remove();
      // A late answer must find a function; a missing one would throw in the page.
      ns[name] = () => { delete ns[name]; };
      fn(v);
    };
    const cancel = () => done(reject, new NetworkError('cancelled'));
    ns[name] = (v) => done(resolve, v);
    script.onerror = () => done(reject, new NetworkError('script failed to load'));
    script.async = true;
    script.src = `${url}${url.includes('?') ? '&' : '?'}callback=__imgwJsonp.${name}`;
    timer = setTimeout(() => done(reject, new NetworkError('no answer in time')), timeoutMs);
    aborts.add(cancel);
    (document.head || document.documentElement).appendChild(script);
  });
}

/**
 * One request to the API through fetch (JSON answer, CORS across origins). The body is
 * parsed whatever the HTTP status: error answers carry `{error: {...}}`.
 * @param {typeof fetch} fetchFn
 * @param {string} url
 * @param {RequestInit} init
 * @param {number} timeoutMs
 * @param {Set<() => void>} aborts
 * @returns {Promise<any>}
 */
async function fetchJson(fetchFn, url, init, timeoutMs, aborts) {
  const ctl = typeof AbortController === 'function' ? new AbortController() : null;
  const cancel = () => ctl?.abort();
  const timer = setTimeout(cancel, timeoutMs);
  aborts.add(cancel);
  try {
    let res;
    try {
      res = await fetchFn(url, { credentials: 'omit', cache: 'no-store', ...init, signal: ctl?.signal });
    } catch (err) {
      throw new NetworkError(String(err?.message ?? err));
    }
    const text = await res.text().catch(() => '');
    try {
      return JSON.parse(text);
    } catch {
      throw new NetworkError(`HTTP ${res.status}: not JSON`);
    }
  } finally {
    clearTimeout(timer);
    aborts.delete(cancel);
  }
}

/**
 * POST through fetch, or XMLHttpRequest where there is no fetch (old browsers).
 * @param {typeof fetch | undefined} fetchFn
 * @param {string} url
 * @param {any} body
 * @param {number} timeoutMs
 * @returns {Promise<any>} the parsed JSON answer, whatever the status
 */
function postJson(fetchFn, url, body, timeoutMs) {
  if (typeof fetchFn === 'function') return fetchJson(fetchFn, url, { method: 'POST', body }, timeoutMs, new Set());
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('POST', url);
    x.timeout = timeoutMs;
    x.onload = () => {
      try {
        resolve(JSON.parse(x.responseText));
      } catch {
        reject(new NetworkError(`HTTP ${x.status}: not JSON`));
      }
    };
    x.onerror = x.ontimeout = () => reject(new NetworkError('upload failed'));
    x.send(body);
  });
}

/** Query string from an object, skipping null and undefined. */
function query(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v == null) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.join('&');
}

/**
 * @typedef {object} JsonpTransportOptions
 * @property {string} apiUrl  base of the API, ending in `/` (`https://h/api/`)
 * @property {'script'|'fetch'} [mode]  default: `script` when there is a DOM
 * @property {typeof fetch} [fetch]
 * @property {number} [pollTimeoutS=25]
 * @property {number} [pollRetries=3]  poll failures in a row (network) before giving up
 * @property {BackoffOptions} [backoff={minMs: 250, maxMs: 5000}]  between failed polls
 * @property {() => number} [random]
 */

/** Error codes of the API that mean the session is gone: log in again. */
const SESSION_GONE = new Set(['bad_token', 'closed']);

/**
 * The JSONP long-poll API (docs/http-api.md) as a transport of protocol frames. The
 * client writes the same frames as over WebSocket; this translates them:
 * `hello` → `login` (its answer becomes `welcome`), `send`/`history`/`chats`/`read`/
 * `open` → the API call of that name (its answer becomes the frame), `ping` → a local
 * `pong`; a loop of `poll` calls delivers everything else. Calls other than `poll` go out
 * one at a time, in order, as frames do on a WebSocket, and so stay below the gateway's
 * limit of 4 waiting requests per token.
 *
 * When the session is lost (`bad_token`, `closed`, a call without an answer, repeated
 * poll failures) the transport closes with 1006 and the client logs in again with
 * `last_id`, re-sending unacknowledged sends with their cids.
 * @param {JsonpTransportOptions} opts
 * @returns {TransportFactory}
 */
export function jsonpTransport(opts) {
  const apiUrl = opts.apiUrl.endsWith('/') ? opts.apiUrl : `${opts.apiUrl}/`;
  const fetchFn = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  const mode = opts.mode ?? (typeof document !== 'undefined' ? 'script' : 'fetch');
  if (mode === 'fetch' && typeof fetchFn !== 'function') throw new TypeError('imgw: no fetch; pass options.fetch');
  if (mode === 'script' && typeof document === 'undefined') throw new TypeError('imgw: script JSONP needs a DOM');
  const pollTimeoutS = Math.min(25, Math.max(0, opts.pollTimeoutS ?? 25));
  const pollRetries = opts.pollRetries ?? 3;
  const backoff = opts.backoff ?? { minMs: 250, maxMs: 5000 };
  const random = opts.random ?? Math.random;
  // The gateway answers a waiting call within 10 s (25 s for a poll); allow for the way.
  const callTimeoutMs = 15000;

  return (_url, h) => {
    let closed = false;
    let token = null;
    /** @type {{frame: any}[]} */
    const queue = [];
    let busy = false;
    const aborts = new Set();

    const deliver = (frame) => {
      if (!closed) h.onMessage(JSON.stringify(frame));
    };
    const finish = (code, reason) => {
      if (closed) return;
      closed = true;
      for (const a of [...aborts]) a();
      if (token) call('logout', { token }).catch(() => {});
      setTimeout(() => h.onClose(code, reason), 0);
    };
    const call = (ep, params, timeoutMs = callTimeoutMs) => {
      const url = `${apiUrl}${ep}?${query(params)}`;
      // A send can be long; fetch posts it as a form, script JSONP has only GET.
      if (mode === 'fetch' && ep === 'send') {
        const body = new URLSearchParams();
        for (const [k, v] of Object.entries(params)) if (v != null) body.set(k, String(v));
        return fetchJson(fetchFn, `${apiUrl}send`, { method: 'POST', body }, timeoutMs, aborts);
      }
      if (mode === 'script' && ep === 'send' && params.body != null) {
        // A GET keeps line breaks only if the body is encoded twice (body_enc=pct):
        // the server's HTTP layer takes a once-encoded %0A for the end of the line.
        const twice = { ...params, body: encodeURIComponent(String(params.body)), body_enc: 'pct' };
        return scriptJsonp(`${apiUrl}${ep}?${query(twice)}`, timeoutMs, aborts);
      }
      return mode === 'script' ? scriptJsonp(url, timeoutMs, aborts) : fetchJson(fetchFn, url, {}, timeoutMs, aborts);
    };

    async function login(hello) {
      let r;
      try {
        r = await call('login', { ticket: hello.ticket, user: hello.ticket == null ? hello.user : undefined, last_id: hello.last_id });
      } catch (err) {
        return finish(1006, `login failed: ${err.message}`);
      }
      if (closed) {
        // Closed while logging in: do not leave the new session waiting for its timeout.
        if (typeof r?.token === 'string') call('logout', { token: r.token }).catch(() => {});
        return undefined;
      }
      if (r && r.error) {
        deliver({ op: 'error', ...r.error });
        const code = String(r.error.code);
        if (code === 'too_many_sessions') return finish(4429, code);
        if (['bad_ticket', 'expired_ticket', 'bad_hello', 'bad_request'].includes(code)) return finish(CLOSE_AUTH_FAILED, code);
        return finish(1011, code);
      }
      if (!r || typeof r.token !== 'string') return finish(1006, 'login: no token');
      token = r.token;
      deliver({ op: 'welcome', v: PROTOCOL_VERSION, user: r.user, jid: r.jid, session: r.session });
      pollLoop();
      pump();
      return undefined;
    }

    async function pollLoop() {
      let failures = 0;
      const pause = (n) => new Promise((res) => setTimeout(res, backoffDelay(n, backoff, random)));
      while (!closed) {
        let r;
        try {
          r = await call('poll', { token, timeout: pollTimeoutS }, pollTimeoutS * 1000 + callTimeoutMs);
        } catch (err) {
          if (closed) return;
          if (++failures > pollRetries) return finish(1006, `poll failed: ${err.message}`);
          await pause(failures);
          continue;
        }
        if (closed) return;
        if (r && r.error) {
          const code = String(r.error.code);
          if (SESSION_GONE.has(code)) return finish(1006, code);
          // Too many calls waiting on the token: wait a little, as after a failure.
          if (code === 'busy' && ++failures <= pollRetries) {
            await pause(failures);
            continue;
          }
          return finish(1011, code);
        }
        failures = 0;
        for (const f of (r && Array.isArray(r.frames) ? r.frames : [])) deliver(f);
      }
    }

    // Calls other than poll, one at a time.
    async function pump() {
      if (busy || !token) return;
      busy = true;
      while (!closed && queue.length) {
        const { frame } = queue[0];
        const { op, ...params } = frame;
        let r;
        try {
          r = await call(op, { token, ...params, with: frame.with ?? undefined });
        } catch (err) {
          // No answer: the send may or may not have happened. The client re-sends it with
          // the same cid on the next session, and the gateway de-duplicates.
          return finish(1006, `${op} failed: ${err.message}`);
        }
        queue.shift();
        if (closed) return;
        if (r && r.error) {
          const code = String(r.error.code);
          if (SESSION_GONE.has(code) || code === 'timeout' || code === 'busy') return finish(1006, code);
          deliver({ op: 'error', for: op === 'send' ? undefined : op, ...r.error });
          continue;
        }
        const answerOp = { send: 'ack', open: 'opened' }[op] ?? op;
        deliver({ op: answerOp, ...r });
      }
      busy = false;
    }

    setTimeout(() => !closed && h.onOpen(), 0);
    return {
      get token() {
        return token;
      },
      send(text) {
        if (closed) return;
        let frame;
        try {
          frame = JSON.parse(text);
        } catch {
          return;
        }
        switch (frame.op) {
          case 'hello':
            if (!token) login(frame);
            return;
          case 'ping':
            // Liveness is the poll loop's business; answer at once.
            setTimeout(() => deliver({ op: 'pong', t: frame.t }), 0);
            return;
          case 'send': case 'history': case 'chats': case 'read': case 'open':
            queue.push({ frame });
            pump();
            return;
          default:
            return undefined;
        }
      },
      close(code = 1000, reason = '') {
        finish(code, reason);
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
const SEEN_IDS = 2048;

/**
 * The client. Events (subscribe with on(), which returns an unsubscribe function):
 *  - `state` {state, prev}
 *  - `open` the welcome frame plus {reconnected, transport}
 *  - `message` ImgwMessage
 *  - `ack` ImgwAck
 *  - `error` an error frame from the server {code, reason, cid?, for?}
 *  - `close` {code, reason, reconnect}
 *  - `reconnecting` {attempt, delayMs}
 *  - `authfailed` {code, reason, error}
 *  - `opened` {with}
 *  - `unread` {conv, count, total}
 *  - `chats` ChatEntry[] (most recent first), whenever the list changes
 *  - `read` {conv, with, id, unread}: a conversation was read, in any session of the user
 *  - `recovered` {count, reset}
 *  - `transport` {name, reason}: the transport in use changed (fallback)
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
    this._requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this._connectTimeoutMs = options.connectTimeoutMs ?? 10000;
    this._pingIntervalMs = options.pingIntervalMs ?? 25000;
    this._pongTimeoutMs = options.pongTimeoutMs ?? 10000;
    this._random = options.random ?? Math.random;
    this._fetch = options.fetch ?? (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : undefined);
    this.apiUrl = options.apiUrl ?? apiUrlFor(options.url);
    this.uploadUrl = options.uploadUrl ?? new URL('../upload', this.apiUrl).href;

    // Transports, best first. A factory given in the options is the only one.
    /** @type {{name: string, make: () => TransportFactory}[]} */
    this._transports = [];
    if (options.transport) {
      this._transports.push({ name: 'custom', make: () => options.transport });
    } else {
      const names = options.transports ?? ['websocket', 'jsonp'];
      const WS = options.WebSocket ?? globalThis.WebSocket;
      for (const name of names) {
        if (name === 'websocket') {
          // No constructor at all (very old browser, or disabled): skip it right away.
          if (typeof WS !== 'function') continue;
          const protocol = options.protocol === undefined ? SUBPROTOCOL : options.protocol;
          this._transports.push({ name, make: () => webSocketTransport(WS, protocol) });
        } else if (name === 'jsonp') {
          this._transports.push({
            name,
            make: () => jsonpTransport({
              apiUrl: this.apiUrl, mode: options.jsonp, fetch: this._fetch,
              pollTimeoutS: options.pollTimeoutS, random: this._random,
            }),
          });
        } else {
          throw new TypeError(`imgw: unknown transport ${name}`);
        }
      }
      if (!this._transports.length) {
        throw new TypeError('imgw: no usable transport (no WebSocket constructor; pass options.WebSocket or allow jsonp)');
      }
    }
    this._fallbackAfter = Math.max(1, options.fallbackAfter ?? 2);
    this._tIndex = 0;
    this._factory = null;
    this._wsFailures = 0; // WebSocket attempts that never opened, in a row
    this._everOpened = false; // the current transport kind has carried a connection

    /** @type {ClientState} */
    this.state = 'idle';
    /** Own bare JID and session id, from the last welcome. */
    this.jid = null;
    this.session = null;
    /** Largest message id seen (msg frames and history); sent as `last_id` on reconnect. */
    this.lastId = options.lastId ?? null;

    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** Unacknowledged sends, in send order. @type {Map<string, any>} */
    this._outbox = new Map();
    /** Queries waiting for their answer frame, in order. @type {any[]} */
    this._requests = [];
    /** @type {Map<string, ChatEntry & {at: number}>} */
    this._chats = new Map();
    this._openConv = null;
    this._seen = new Set();
    this._seq = 0; // orders the chat list by latest activity
    this._attempt = 0;
    this._welcomed = false; // at least one welcome so far
    this._userClosed = false;
    this._transport = null;
    this._transportOpened = false;
    this._gen = 0; // bumps per transport so late events of an old one are ignored
    this._live = false; // welcomed on the current transport
    this._retryTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._lastError = null;
    this._authError = null; // an authentication error frame on the current transport
    this._connectWaiters = [];
    this._welcome = null;
  }

  /** Name of the transport in use or about to be tried: `websocket`, `jsonp` or `custom`. */
  get transportName() {
    return this._transports[this._tIndex]?.name ?? null;
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
   * Closes for good: no reconnect. Pending sends and queries are rejected with `closed`.
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
    this._transportOpened = false;
    let t;
    try {
      this._factory ??= this._transports[this._tIndex].make();
      t = this._factory(this.url, {
        onOpen: () => {
          if (gen !== this._gen) return;
          this._transportOpened = true;
          this._onTransportOpen(ticket);
        },
        onMessage: (text) => gen === this._gen && this._onFrame(text),
        onClose: (code, reason) => gen === this._gen && this._onTransportClose(code, reason),
      });
    } catch (err) {
      // A bad URL, or a WebSocket forbidden by policy, throws synchronously in browsers.
      // The same would happen on every attempt, so move on to the next transport at once.
      this._emit('error', { code: 'transport', reason: String(err?.message ?? err) });
      if (this._nextTransport(`${this.transportName} threw: ${err?.message ?? err}`)) return;
      this._scheduleRetry();
      return;
    }
    this._transport = t;
    this._connectTimer = setTimeout(() => {
      if (gen !== this._gen || this._live) return;
      this._kill(4000, 'connect timeout');
    }, this._connectTimeoutMs);
  }

  /**
   * Moves to the next transport in the list, if there is one, and connects with it now.
   * @param {string} reason
   * @returns {boolean} false when there is no other transport
   */
  _nextTransport(reason) {
    if (this._tIndex + 1 >= this._transports.length) return false;
    this._tIndex++;
    this._factory = null;
    this._wsFailures = 0;
    this._everOpened = false;
    this._attempt = 0;
    this._emit('transport', { name: this.transportName, reason });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (!this._userClosed) this._open();
    }, 0);
    return true;
  }

  _onTransportOpen(ticket) {
    this._everOpened = true;
    this._wsFailures = 0;
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
    const opened = this._transportOpened;
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
    // A WebSocket that has never once opened, several times in a row: a proxy or a
    // firewall is in the way. Fall back rather than retry forever.
    if (this.transportName === 'websocket' && !opened && !this._everOpened) {
      if (++this._wsFailures >= this._fallbackAfter
        && this._nextTransport(`websocket failed ${this._wsFailures} times without opening`)) return;
    }
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
      case 'history': return this._onHistory(f);
      case 'chats': return this._onChats(f);
      case 'read': return this._onRead(f);
      case 'recovered': return this._onRecovered(f);
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
    // Queries made while disconnected, or lost with the last connection, go out now.
    for (const r of this._requests) {
      if (r.key === null && r.peer != null) r.key = bareJid(r.peer, this.domain);
      if (r.frame.with != null) r.frame.with = r.key ?? r.frame.with;
      this._write(r.frame);
    }
    this._armPing();
    this._setState('connected');
    this._emit('open', { ...f, reconnected, transport: this.transportName });
    this._settleWaiters(null, f);
  }

  get domain() {
    const at = this.jid ? this.jid.indexOf('@') : -1;
    return at >= 0 ? this.jid.slice(at + 1) : '';
  }

  /** The server's msg object as an ImgwMessage. */
  _message(f) {
    const conv = String(f.conv).toLowerCase();
    const own = typeof f.from === 'string' && this.jid != null && bareJid(f.from, '') === this.jid;
    return { ...f, conv, own };
  }

  _noteId(id) {
    if (typeof id === 'string' && /^\d+$/.test(id) && (this.lastId == null || compareIds(id, this.lastId) > 0)) this.lastId = id;
  }

  _markSeen(id) {
    this._seen.add(id);
    if (this._seen.size > SEEN_IDS) this._seen.delete(this._seen.values().next().value);
  }

  _onMsg(f) {
    if (typeof f.id !== 'string' || typeof f.conv !== 'string') return;
    if (this._seen.has(f.id)) return; // re-delivered: recovery overlapping live traffic
    this._markSeen(f.id);
    this._noteId(f.id);
    /** @type {ImgwMessage} */
    const m = this._message(f);
    this._emit('message', m);
    this._record(m, !m.own && m.conv !== this._openConv);
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
    if (typeof f.id === 'string') this._markSeen(f.id);
    /** @type {ImgwAck} */
    const ack = { cid: f.cid, id: message.id, ts: message.ts, queued: !!f.queued, message };
    e.resolve(ack);
    this._emit('ack', ack);
    this._record(message, false);
  }

  _onError(f) {
    const error = { code: String(f.code ?? 'unknown'), reason: String(f.reason ?? '') };
    if (typeof f.cid === 'string') error.cid = f.cid;
    if (typeof f.for === 'string') error.for = f.for;
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
    if (error.for !== undefined) {
      // Answers come in request order, so the oldest query of that kind failed.
      const r = this._requests.find((x) => x.op === error.for);
      if (r) this._settleRequest(r, new ImgwError(error.code, error.reason || error.code));
    }
    this._emit('error', error);
  }

  _onHistory(f) {
    const key = typeof f.with === 'string' ? f.with.toLowerCase() : null;
    const msgs = (Array.isArray(f.msgs) ? f.msgs : [])
      .filter((m) => m && typeof m.id === 'string' && typeof m.conv === 'string')
      .map((m) => this._message(m));
    for (const m of msgs) this._noteId(m.id);
    const r = this._requests.find((x) => x.op === 'history' && (x.key === key || key === null))
      ?? this._requests.find((x) => x.op === 'history');
    if (r) this._settleRequest(r, null, { with: key, msgs, more: !!f.more });
  }

  _onChats(f) {
    const list = Array.isArray(f.chats) ? f.chats : [];
    // The server's list is the truth for the conversations it names; conversations only
    // this page knows (opened, nothing sent yet) stay. Order: the server's, then the rest.
    const fresh = new Map();
    const base = this._seq + list.length + 1;
    list.forEach((c, i) => {
      if (!c || typeof c.peer !== 'string') return;
      const conv = c.peer.toLowerCase();
      const old = this._chats.get(conv);
      let last = old?.last ?? null;
      if (typeof c.last_id === 'string' && (!last || compareIds(c.last_id, last.id) > 0)) {
        const from = typeof c.last_sender === 'string' ? c.last_sender.toLowerCase() : '';
        last = {
          id: c.last_id, conv, from, to: from === this.jid ? conv : (this.jid ?? ''), body: String(c.preview ?? ''),
          kind: String(c.kind ?? 'text'), ts: Number(c.ts) || 0, own: from !== '' && bareJid(from, '') === this.jid,
          preview: true,
        };
      }
      fresh.set(conv, { conv, last, unread: Math.max(0, Number(c.unread) || 0), at: base - i });
    });
    for (const [conv, c] of this._chats) if (!fresh.has(conv)) fresh.set(conv, c);
    this._seq = base;
    this._chats = fresh;
    for (const c of fresh.values()) if (c.conv === this._openConv && c.unread) c.unread = 0;
    const r = this._requests.find((x) => x.op === 'chats');
    if (r) this._settleRequest(r, null, f);
    this._emit('unread', { conv: null, count: 0, total: this.totalUnread });
    this._emitChats();
  }

  _onRead(f) {
    if (typeof f.with !== 'string') return;
    const conv = f.with.toLowerCase();
    const unread = Math.max(0, Number(f.unread) || 0);
    const c = this._chats.get(conv);
    if (c && c.unread !== unread) {
      c.unread = unread;
      this._emit('unread', { conv, count: unread, total: this.totalUnread });
      this._emitChats();
    }
    const ev = { conv, with: f.with, id: f.id, unread };
    const r = this._requests.find((x) => x.op === 'read' && x.key === conv);
    if (r) this._settleRequest(r, null, ev);
    this._emit('read', ev);
  }

  _onRecovered(f) {
    const ev = { count: Number(f.count) || 0, reset: !!f.reset };
    this._emit('recovered', ev);
    // More was missed than the server replays: the counts and previews here are stale.
    if (ev.reset) this.chats().catch(() => {});
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
    for (const r of [...this._requests]) this._settleRequest(r, new ImgwError(code, reason));
  }

  // ---- queries: history, chats, read ----

  /**
   * Sends a query frame and waits for its answer. A query made while disconnected waits
   * for the connection; one whose connection is lost is asked again on the next one.
   */
  _request(op, frame, peer) {
    if (this._userClosed || this.state === 'closed') return Promise.reject(new ImgwError('closed', 'client closed'));
    const r = { op, frame, peer, key: null, resolve: null, reject: null, timer: null };
    if (peer != null) {
      // A user id needs the domain from the welcome; it is resolved then if not known yet.
      r.key = peer.includes('@') || this.jid ? bareJid(peer, this.domain) : null;
      frame.with = r.key ?? String(peer);
    }
    const p = new Promise((resolve, reject) => {
      r.resolve = resolve;
      r.reject = reject;
    });
    if (this._requestTimeoutMs > 0) {
      r.timer = setTimeout(() => this._settleRequest(r, new ImgwError('timeout', `no answer to ${op} in time`)), this._requestTimeoutMs);
    }
    this._requests.push(r);
    if (this._live) this._write(frame);
    return p;
  }

  _settleRequest(r, err, value) {
    const i = this._requests.indexOf(r);
    if (i < 0) return;
    this._requests.splice(i, 1);
    clearTimeout(r.timer);
    if (err) r.reject(err);
    else r.resolve(value);
  }

  /**
   * One page of a conversation's history, oldest first. For the page before it, pass
   * `before` = the first message's id; `more` says whether there may be one.
   * @param {string} peer  user id or bare JID
   * @param {{before?: string, limit?: number}} [opts]  limit 1-100 (server default 50)
   * @returns {Promise<{with: string, msgs: ImgwMessage[], more: boolean}>} rejects with
   *   `unavailable` when the gateway keeps no history, `timeout`, `closed`
   */
  history(peer, opts = {}) {
    /** @type {Record<string, any>} */
    const frame = { op: 'history', with: null };
    if (opts.before != null) frame.before = String(opts.before);
    if (opts.limit != null) frame.limit = opts.limit;
    return this._request('history', frame, String(peer));
  }

  /**
   * Asks the server for the chat list. Its unread counts replace the local ones; the
   * `chats` and `unread` events follow.
   * @param {number} [limit]  1-100 (server default 50)
   * @returns {Promise<ChatsFrame>}
   */
  chats(limit) {
    /** @type {Record<string, any>} */
    const frame = { op: 'chats' };
    if (limit != null) frame.limit = limit;
    return this._request('chats', frame);
  }

  /**
   * Moves the user's read marker of a conversation to message `id`. Every session of the
   * user (this one too) gets the `read` event with what is still unread.
   * @param {string} peer
   * @param {string} id
   * @returns {Promise<{conv: string, with: string, id: string, unread: number}>}
   */
  read(peer, id) {
    return this._request('read', { op: 'read', with: null, id: String(id) }, String(peer));
  }

  // ---- pictures ----

  /**
   * An API token for this user: the long-poll session's own when on that transport,
   * otherwise a short-lived API session that the caller logs out.
   * @returns {Promise<{token: string, temporary: boolean}>}
   */
  async _apiToken() {
    const own = this._live ? this._transport?.token : null;
    if (own) return { token: own, temporary: false };
    const ticket = this._ticket == null ? null : typeof this._ticket === 'function' ? await this._ticket() : this._ticket;
    const params = ticket != null ? { ticket } : { user: this._user };
    const r = await this._httpGet('login', params);
    if (r?.error) throw new ImgwError(String(r.error.code), String(r.error.reason ?? r.error.code));
    if (typeof r?.token !== 'string') throw new ImgwError('bad_answer', 'login answered without a token');
    return { token: r.token, temporary: true };
  }

  async _httpGet(ep, params) {
    const url = `${this.apiUrl}${ep}?${query(params)}`;
    try {
      if (typeof this._fetch === 'function') return await fetchJson(this._fetch, url, {}, 15000, new Set());
      return await scriptJsonp(url, 15000, new Set());
    } catch (err) {
      throw new ImgwError('network', String(err?.message ?? err));
    }
  }

  /**
   * Uploads a picture (`POST /upload?token=...`, docs/http-api.md). The gateway checks the
   * size and detects the type from the bytes: JPEG, PNG, GIF or WebP.
   * @param {Blob | ArrayBuffer | Uint8Array} file  a File from an input, a Blob, or bytes
   * @returns {Promise<UploadResult>} rejects with an ImgwError: `too_large`,
   *   `unsupported_type`, `bad_token`, `network`, ...
   */
  async uploadImage(file) {
    const { token, temporary } = await this._apiToken();
    try {
      let r;
      try {
        r = await postJson(this._fetch, `${this.uploadUrl}?${query({ token })}`, file, 60000);
      } catch (err) {
        throw new ImgwError('network', String(err?.message ?? err));
      }
      if (r?.error) throw new ImgwError(String(r.error.code), String(r.error.reason ?? r.error.code));
      if (typeof r?.url !== 'string') throw new ImgwError('bad_answer', 'upload answered without a url');
      return r;
    } finally {
      if (temporary) this._httpGet('logout', { token }).catch(() => {});
    }
  }

  /**
   * Uploads a picture and sends its URL as a message of kind `image`.
   * @param {string} to
   * @param {Blob | ArrayBuffer | Uint8Array} file
   * @param {{cid?: string}} [opts]
   * @returns {Promise<ImgwAck & {upload: UploadResult}>}
   */
  async sendImage(to, file, opts = {}) {
    const upload = await this.uploadImage(file);
    const ack = await this.send(to, upload.url, { ...opts, kind: 'image' });
    return { ...ack, upload };
  }

  // ---- conversations and unread counts ----

  /**
   * Marks `peer` (user id or JID) as the conversation on screen, or none with null: its
   * unread count drops to zero here and the gateway is told (it flags messages with
   * `open`). To clear the count on the server and in the user's other tabs, call read().
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

  /** The chat list as this client knows it, most recent first. @returns {ChatEntry[]} */
  chatList() {
    return [...this._chats.values()]
      .sort((a, b) => b.at - a.at)
      .map(({ conv, last, unread }) => ({ conv, last, unread }));
  }

  _record(m, countUnread) {
    let c = this._chats.get(m.conv);
    if (!c) this._chats.set(m.conv, (c = { conv: m.conv, last: null, unread: 0, at: 0 }));
    // A message the server's chat list already counted (its id is not newer than the
    // list's last id) must not count twice.
    const newer = !c.last || compareIds(m.id, c.last.id) > 0;
    // Keep the newest message as `last` even if frames arrive out of order. Recency is the
    // order of arrival here, not `ts`: the server's clock and this one may disagree.
    if (!c.last || compareIds(m.id, c.last.id) >= 0) c.last = m;
    c.at = ++this._seq;
    if (countUnread && newer) {
      c.unread++;
      this._emit('unread', { conv: m.conv, count: c.unread, total: this.totalUnread });
    }
    this._emitChats();
  }

  _emitChats() {
    this._emit('chats', this.chatList());
  }
}

export default ImgwClient;
