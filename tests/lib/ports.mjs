// Loopback port helpers for integration tests.
//
// Usage:
//   import { freePort, waitForPort } from '../lib/ports.mjs';
//   const port = await freePort();            // a port that was free a moment ago
//   await waitForPort(port, { deadline: Date.now() + 15000 });
//
// freePort() asks the kernel for an ephemeral port on 127.0.0.1 and releases it at
// once. Another process could grab it in between; the window is tiny and servers we
// start fail loudly on a bind error, so tests see that rather than a silent mix-up.

import net from 'node:net';

/** @returns {Promise<number>} a TCP port on 127.0.0.1 that was free when asked */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = srv.address();
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/**
 * Resolves `n` distinct free ports.
 * @param {number} n
 * @returns {Promise<number[]>}
 */
export async function freePorts(n) {
  const seen = new Set();
  while (seen.size < n) seen.add(await freePort());
  return [...seen];
}

/**
 * Resolves true when a TCP connection to 127.0.0.1:port succeeds, false when refused.
 * @param {number} port
 * @param {number} [timeoutMs=1000] bound on a single attempt
 * @returns {Promise<boolean>}
 */
export function canConnect(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Polls until 127.0.0.1:port accepts a TCP connection.
 * @param {number} port
 * @param {{ deadline?: number, intervalMs?: number, abort?: () => (string|null) }} [opts]
 *   deadline: absolute Date.now() value (default: 15 s from now);
 *   abort: called between attempts; a non-null return stops waiting with that reason.
 * @returns {Promise<void>} rejects with an Error on deadline or abort
 */
export async function waitForPort(port, opts = {}) {
  const deadline = opts.deadline ?? Date.now() + 15000;
  const intervalMs = opts.intervalMs ?? 25;
  for (;;) {
    const why = opts.abort ? opts.abort() : null;
    if (why) throw new Error(`gave up waiting for 127.0.0.1:${port}: ${why}`);
    if (await canConnect(port, Math.max(50, Math.min(1000, deadline - Date.now())))) return;
    if (Date.now() >= deadline) throw new Error(`127.0.0.1:${port} did not accept connections in time`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
