// Reads what the benchmark reports about processes and the machine from /proc.
//
// Memory is VmRSS from /proc/PID/status (resident set, KiB). CPU is utime + stime from
// /proc/PID/stat, in clock ticks converted to seconds; it covers every thread of the
// process but not its children, which is what we want: each server and each load
// process is sampled on its own.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

let ticksPerSecond = 100;
try {
  ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch { /* 100 is the Linux default */ }

/**
 * @param {number} pid
 * @returns {number} resident set size in KiB, or NaN when the process is gone
 */
export function rssKiB(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/**
 * @param {number} pid
 * @returns {number} user + system CPU seconds used so far, or NaN when the process is gone
 */
export function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses; fields after the last
    // ')' are fixed: state is field 3, utime field 14, stime field 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / ticksPerSecond;
  } catch {
    return NaN;
  }
}

/**
 * @param {number} pid
 * @returns {{user:number, system:number}} CPU seconds in user and kernel mode so far
 *   (NaN when the process is gone)
 */
export function cpuSplit(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(rest[11]) / ticksPerSecond, system: Number(rest[12]) / ticksPerSecond };
  } catch {
    return { user: NaN, system: NaN };
  }
}

/**
 * Sums CPU seconds over several processes.
 * @param {number[]} pids
 */
export function cpuSecondsOf(pids) {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
}

/** @returns {{nproc:number, cpu:string, memGiB:number, kernel:string, node:string}} */
export function machineInfo() {
  let cpu = 'unknown';
  let memKiB = NaN;
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch { /* leave unknown */ }
  try {
    const m = /^MemTotal:\s+(\d+)\s+kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) memKiB = Number(m[1]);
  } catch { /* leave NaN */ }
  return {
    nproc: os.cpus().length,
    cpu,
    memGiB: Math.round((memKiB / 1048576) * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
  };
}

/**
 * CPU seconds the whole machine has spent busy (all CPUs, everything but idle and
 * iowait) since boot, from the first line of /proc/stat. Differences of two readings,
 * minus the processes we measure, show how much else ran during a window: on a shared
 * machine that is noise in every latency figure.
 */
export function machineBusySeconds() {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = v;
    return (user + nice + system + irq + softirq + steal) / ticksPerSecond;
  } catch {
    return NaN;
  }
}

/**
 * A process and all its descendants, read from /proc (e.g. PostgreSQL's postmaster and
 * its backends).
 * @param {number} root
 * @returns {number[]}
 */
export function processTree(root) {
  if (!root) return [];
  const children = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch { /* gone meanwhile */ }
  }
  const out = [];
  for (const stack = [root]; stack.length;) {
    const pid = stack.pop();
    out.push(pid);
    for (const c of children.get(pid) || []) stack.push(c);
  }
  return out;
}

/**
 * Size of a Prosody file-store folder (e.g. data/<host>/offline): files, bytes, and the
 * `item(` records in them (one per stored message in Prosody's list files).
 * @param {string} dir
 * @returns {{files:number, bytes:number, items:number}}
 */
export function dirStats(dir) {
  const out = { files: 0, bytes: 0, items: 0 };
  let names = [];
  try { names = fs.readdirSync(dir); } catch { return out; }
  for (const n of names) {
    try {
      const text = fs.readFileSync(`${dir}/${n}`, 'utf8');
      out.files++;
      out.bytes += Buffer.byteLength(text);
      out.items += (text.match(/^item\(/gm) || []).length;
    } catch { /* gone meanwhile */ }
  }
  return out;
}
