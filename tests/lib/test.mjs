// node:test with a time bound on every test and hook.
//
//   import { after, before, describe, it } from '../lib/test.mjs';   // instead of 'node:test'
//
// Node 20 applies --test-timeout to a whole file, not to each test, so a hang would fail
// the file without naming the test. Here every it/test and every hook gets
// { timeout: IMGW_TEST_TIMEOUT_MS (default 120 s) × IMGW_TIME_SCALE } unless it sets its
// own (which is scaled too), and a test that hangs fails on its own, by name, with node's
// "timed out" error.

import * as nt from 'node:test';
import { scaled } from './bounded.mjs';

export const TEST_TIMEOUT_MS = scaled(Number(process.env.IMGW_TEST_TIMEOUT_MS) || 120_000);

/** Normalises node:test's (name, options, fn) overloads and adds the default timeout. */
function bounded(fnOf, timeout) {
  return (...args) => {
    let name;
    let opts = {};
    let fn;
    for (const a of args) {
      if (typeof a === 'string') name = a;
      else if (typeof a === 'function') fn = a;
      else if (a && typeof a === 'object') opts = a;
    }
    const o = { timeout, ...opts };
    if (opts.timeout !== undefined) o.timeout = scaled(opts.timeout);
    return name === undefined ? fnOf(o, fn) : fnOf(name, o, fn);
  };
}

function boundedHook(hook) {
  return (fn, opts = {}) => hook(fn, { ...opts, timeout: opts.timeout !== undefined ? scaled(opts.timeout) : TEST_TIMEOUT_MS });
}

// A suite is bounded by the sum of its tests (and by run-file.mjs's per-file bound):
// giving it the per-test bound would cancel its later tests along with a slow one.
export const describe = bounded(nt.describe, Infinity);
export const it = bounded(nt.it, TEST_TIMEOUT_MS);
export const test = bounded(nt.test, TEST_TIMEOUT_MS);
export const before = boundedHook(nt.before);
export const after = boundedHook(nt.after);
export const beforeEach = boundedHook(nt.beforeEach);
export const afterEach = boundedHook(nt.afterEach);
export const mock = nt.mock;
export default test;
