/**
 * The disk's flush latency while a latency run goes on, run as a child process beside it: every
 * INTERVAL_MS it writes 8 KB to a file in DIR and fdatasync()s it, as a commit flushes the WAL,
 * and times each flush. On SIGTERM it prints one JSON line on stdout: how many flushes, their
 * median, p99 and longest time, and every flush that took longer than STALL_MS, with when it
 * ended (Date.now(), the clock of serve's log lines). Then it removes its file.
 *
 * Why: a commit cannot return before its WAL is on disk, and on the virtual disks this was
 * developed on a flush that usually takes 0.1 ms sometimes takes 100 ms to seconds, with the
 * machine otherwise idle. Every durable pipeline waits it out, the store and the plain baseline
 * alike; run beside each latency run, the probe says whether that run met such a stall.
 *
 * Synchronous on purpose: nothing else runs in this process, and a flush that stalls holds the
 * next one back just as it holds back the commits behind it.
 *
 * Environment: DIR (the directory to write in), INTERVAL_MS (default 25), STALL_MS (default 50).
 */
import fs from 'node:fs';
import path from 'node:path';

const dir = process.env.DIR;
if (!dir) throw new Error('flush-probe: DIR is not set');
const intervalMs = Number(process.env.INTERVAL_MS ?? 25);
const stallMs = Number(process.env.STALL_MS ?? 50);
const file = path.join(dir, `cse-flush-probe-${process.pid}`);
const page = Buffer.alloc(8192, 0x5a);
// A ring of 16 MB, as the WAL writes segment after segment rather than one page again and again.
const ring = 16 * 1024 * 1024;

const fd = fs.openSync(file, 'w');
const times: number[] = [];
const stalls: { at: number; ms: number }[] = [];
let offset = 0;
let stopping = false;

const flushOnce = () => {
  const started = performance.now();
  fs.writeSync(fd, page, 0, page.length, offset);
  fs.fdatasyncSync(fd);
  const ms = performance.now() - started;
  offset = (offset + page.length) % ring;
  times.push(ms);
  if (ms > stallMs) stalls.push({ at: Date.now(), ms });
};

const report = () => {
  fs.closeSync(fd);
  fs.rmSync(file, { force: true });
  const sorted = [...times].sort((a, b) => a - b);
  const at = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN);
  process.stdout.write(`${JSON.stringify({ flushes: times.length, p50: at(50), p99: at(99), max: sorted.at(-1) ?? NaN, stallMs, stalls })}\n`);
};

process.on('SIGTERM', () => {
  stopping = true;
});

const tick = () => {
  if (stopping) return report();
  flushOnce();
  setTimeout(tick, intervalMs);
};
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
tick();
