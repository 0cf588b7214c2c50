// Bounded, named waits for tests and test helpers.
//
// Every await on something outside the test process (a server starting, a port, a PID
// line, an exit, a close handshake) goes through one of these, so a stuck step fails
// within a known time with a message that names the step and, where a server is
// involved, the tail of that server's log.
//
//   import { within, until, tail, scaled } from '../lib/bounded.mjs';
//   await within(child.exited, 10_000, 'prosody exit', () => prosody.logText());
//   await until('imgw link up', 10_000, async () => (await gw.health()).link === 'up',
//               () => gw.logText());
//
// IMGW_TIME_SCALE (a number, default 1; STRESS=1 runs of scripts/test.sh set 3) stretches
// every bound given through scaled(), which within() and until() apply themselves: a
// loaded machine is slower, not broken.

export const TIME_SCALE = Math.max(1, Number(process.env.IMGW_TIME_SCALE) || 1);

/** A time bound stretched for a loaded machine (IMGW_TIME_SCALE). */
export function scaled(ms) {
  return Math.round(ms * TIME_SCALE);
}

/** The last n lines of a text. */
export function tail(text, n = 30) {
  return String(text ?? '').split('\n').slice(-n).join('\n');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function describeLog(log) {
  if (!log) return '';
  let text;
  try {
    text = typeof log === 'function' ? log() : log;
  } catch (err) {
    text = `(log unavailable: ${err.message})`;
  }
  return text ? `\n--- log tail ---\n${tail(text)}` : '';
}

/**
 * Resolves like `promise`, or rejects after `ms` (scaled) with an Error naming `what`,
 * followed by the tail of `log` (a string, or a function returning one, read only on
 * failure).
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} what
 * @param {string | (() => string)} [log]
 * @returns {Promise<T>}
 */
export function within(promise, ms, what, log) {
  const bound = scaled(ms);
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done within ${bound} ms${describeLog(log)}`)), bound);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Polls `probe` until it returns a truthy value (which is resolved) or `ms` (scaled)
 * pass; then rejects naming `what`, the probe's last error and the log tail. Each probe
 * call is itself bounded by the time left.
 * @template T
 * @param {string} what
 * @param {number} ms
 * @param {() => T | Promise<T>} probe
 * @param {string | (() => string)} [log]
 * @param {number} [intervalMs=25]
 * @returns {Promise<T>}
 */
export async function until(what, ms, probe, log, intervalMs = 25) {
  const bound = scaled(ms);
  const deadline = Date.now() + bound;
  let last;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    try {
      const v = await within(Promise.resolve().then(probe), left / TIME_SCALE, `${what} (probe)`);
      if (v) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  throw new Error(`${what}: not within ${bound} ms${last ? ` (last error: ${last.message.split('\n')[0]})` : ''}${describeLog(log)}`);
}
