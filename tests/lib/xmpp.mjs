// XMPP client and component helpers for integration tests (@xmpp/client 0.13).
//
// Usage:
//   import { login, connectComponent, nextMessage, xml, iqError } from '../lib/xmpp.mjs';
//   const alice = await login({ port: p.c2sPort, domain: 'shop.test', username: 'alice',
//                               password: 'pw', resource: 'phone' });
//   const gw = await connectComponent({ port: p.componentPort, domain: 'gw.shop.test',
//                                       secret: 's3cret' });
//   const seen = nextMessage(gw, (m) => m.getChild('copy', NS), 5000); // or after sending
//   await alice.send(xml('message', { to: 'bob@shop.test', type: 'chat' },
//                        xml('body', {}, 'hi')));
//   const copy = await seen;
//   await gw.iqCaller.request(xml('iq', { type: 'set', to: 'shop.test' }, ...), 5000);
//   const { condition, type } = await iqError(gw.iqCaller.request(...)); // 'forbidden', 'auth'
//   await stopAll(alice, gw);
//
// Every client and component made here records each <message> and <presence> it
// receives from the moment it is online in an inbox (IQs go to iqCaller/iqCallee), so
// a stanza that arrives before the test starts waiting for it is not lost.
// nextMessage(c, pred, ms) takes the first recorded message matching pred out of the
// inbox (others stay), or waits up to ms for one, then rejects with a timeout error.
// With pred = () => true it returns the next message in arrival order, which is how a
// test proves that nothing else came first. nextPresence() is the same for <presence>.
//
// login() authenticates with whatever @xmpp/client picks among the mechanisms Prosody
// offers over plain TCP on loopback: SCRAM-SHA-1 (works with the sasl-scram-sha-1 1.2.1
// pin in package.json), or PLAIN when mechanism: 'PLAIN' is passed.

import { client } from '@xmpp/client';
import { component } from '@xmpp/component';
import xmppXml from '@xmpp/xml';
import xmppJid from '@xmpp/jid';

export const xml = xmppXml;
export const jid = xmppJid;

const inboxes = new WeakMap();

class Inbox {
  constructor(entity) {
    this.items = [];
    this.waiters = [];
    entity.on('stanza', (st) => {
      if (st.is('iq')) return; // iqCaller/iqCallee own IQs
      const i = this.waiters.findIndex((w) => w.pred(st));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w.resolve(st);
      } else {
        this.items.push(st);
      }
    });
  }

  next(pred, ms) {
    const i = this.items.findIndex((m) => pred(m));
    if (i >= 0) return Promise.resolve(this.items.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (st) => { clearTimeout(w.timer); resolve(st); },
      };
      w.timer = setTimeout(() => {
        const k = this.waiters.indexOf(w);
        if (k >= 0) this.waiters.splice(k, 1);
        reject(new Error(`no matching stanza within ${ms} ms; unmatched in inbox: `
          + (this.items.map((m) => m.toString()).join('\n') || '(none)')));
      }, ms);
      this.waiters.push(w);
    });
  }
}

function inboxOf(entity) {
  let box = inboxes.get(entity);
  if (!box) {
    box = new Inbox(entity);
    inboxes.set(entity, box);
  }
  return box;
}

/**
 * Resolves the first <message> received by `entity` that matches `pred`, taking it out
 * of the inbox; rejects if none arrives within `ms`.
 * @param {object} entity  a client or component from this module (others get an inbox
 *                         from the time of this call on)
 * @param {(m: object) => boolean} [pred]
 * @param {number} [ms=5000]
 */
export function nextMessage(entity, pred = () => true, ms = 5000) {
  return inboxOf(entity).next((st) => st.is('message') && pred(st), ms);
}

/** Like nextMessage, for <presence>. */
export function nextPresence(entity, pred = () => true, ms = 5000) {
  return inboxOf(entity).next((st) => st.is('presence') && pred(st), ms);
}

/** Messages and presences received and not yet taken (a copy of the list). */
export function pendingStanzas(entity) {
  return [...inboxOf(entity).items];
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Starts an entity; on failure stops it so @xmpp/reconnect does not retry behind our back. */
async function startBounded(entity, ms, what) {
  entity.errors = [];
  entity.on('error', (err) => entity.errors.push(err));
  inboxOf(entity);
  try {
    await withTimeout(entity.start(), ms, what);
  } catch (err) {
    entity.reconnect?.stop?.();
    await entity.stop().catch(() => {});
    throw err;
  }
  return entity;
}

/**
 * Logs a user in over c2s and sends initial presence (unless presence: false), then
 * waits until the server has reflected it, i.e. the session is available.
 * @param {{ port: number, domain: string, username: string, password: string,
 *           resource?: string, host?: string, presence?: boolean, priority?: number,
 *           mechanism?: 'PLAIN' | 'SCRAM-SHA-1', timeoutMs?: number }} o
 * @returns {Promise<object>} the online @xmpp/client entity (with .errors)
 */
export async function login(o) {
  const c = client({
    service: `xmpp://${o.host ?? '127.0.0.1'}:${o.port}`,
    domain: o.domain,
    resource: o.resource ?? 'test',
    username: o.username,
    password: o.password,
  });
  if (o.mechanism) forceMechanism(c, o.mechanism);
  await startBounded(c, o.timeoutMs ?? 10000, `login of ${o.username}@${o.domain}`);
  if (o.presence !== false) {
    // The server reflects initial presence back to the session once it has made the
    // session available; until then messages to the bare JID skip this resource.
    const self = c.jid.toString();
    const echoed = nextPresence(c, (x) => x.attrs.from === self && !x.attrs.type, o.timeoutMs ?? 10000);
    const children = o.priority !== undefined ? [xml('priority', {}, String(o.priority))] : [];
    await c.send(xml('presence', {}, ...children));
    try {
      await echoed;
    } catch (err) {
      await stopAll(c);
      throw new Error(`${self}: initial presence was not reflected: ${err.message}`);
    }
  }
  return c;
}

// @xmpp/sasl takes the first of its mechanisms (SCRAM-SHA-1, PLAIN, ANONYMOUS) that the
// server offers and has no option to choose. Trim the offered <mechanisms> list before
// its 'element' listener sees the stream features.
function forceMechanism(c, name) {
  c.prependListener('element', (el) => {
    if (!el.is('features', 'http://etherx.jabber.org/streams')) return;
    const mechs = el.getChild('mechanisms', 'urn:ietf:params:xml:ns:xmpp-sasl');
    if (mechs) mechs.children = mechs.getChildElements().filter((m) => m.text() === name);
  });
}

/**
 * Opens a XEP-0114 component connection.
 * @param {{ port: number, domain: string, secret: string, host?: string, timeoutMs?: number }} o
 * @returns {Promise<object>} the online @xmpp/component entity (with .errors)
 */
export async function connectComponent(o) {
  const c = component({
    service: `xmpp://${o.host ?? '127.0.0.1'}:${o.port}`,
    domain: o.domain,
    password: o.secret,
  });
  return startBounded(c, o.timeoutMs ?? 10000, `component ${o.domain}`);
}

/**
 * Resolves the stanza error condition ('forbidden', ...) of a rejected IQ request, with
 * its type; rejects if the request succeeded or failed otherwise (e.g. timeout).
 * @param {Promise<unknown>} request  e.g. entity.iqCaller.request(iq, ms)
 * @returns {Promise<{ condition: string, type: string|undefined }>}
 */
export async function iqError(request) {
  let result;
  try {
    result = await request;
  } catch (err) {
    if (err && err.name === 'StanzaError') return { condition: err.condition, type: err.element?.attrs.type };
    throw err;
  }
  throw new Error(`expected an IQ error, got a result: ${result}`);
}

/** Stops clients/components, ignoring ones already gone; bounded per entity. */
export async function stopAll(...entities) {
  await Promise.all(entities.filter(Boolean).map(async (e) => {
    e.reconnect?.stop?.();
    await withTimeout(e.stop(), 5000, 'stop').catch(() => {});
  }));
}
