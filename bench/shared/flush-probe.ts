/**
 * The disk's flush latency while a latency run goes on, run as a child process beside it: every
 * INTERVAL_MS it overwrites 8 KB of a file in DIR and fdatasync()s it, as a commit flushes the
 * WAL, and times each flush. On SIGTERM it prints one JSON line on stdout, every flush as
 * [when it ended (Date.now(), the clock of serve's log lines), how long it took in ms], and
 * removes its file (the bench removes it too, should this process die first).
 *
 * Why: a commit cannot return before its WAL is on disk, and on the virtual disks this was
 * developed on a flush that usually takes 0.1 ms sometimes takes 100 ms to seconds, with the
 * machine otherwise idle. Every durable pipeline waits it out, the store and the plain baseline
 * alike; run beside each latency run, the probe says whether that run met such a stall.
 *
 * The file is written out whole and flushed before the first timed flush: PostgreSQL writes into
 * WAL segments of their full size, and a write that grew the file would also have its new size
 * committed to the file system's journal at every flush, which the WAL's are not.
 *
 * Synchronous on purpose: nothing else runs in this process, and a flush that stalls holds the
 * next one back just as it holds back the commits behind it.
 *
 * Environment: DIR (the directory to write in), INTERVAL_MS (between flushes).
 */
import fs from 'node:fs';
import path from 'node:path';

const dir = process.env.DIR;
const intervalMs = Number(process.env.INTERVAL_MS);
if (!dir || !(intervalMs > 0)) throw new Error('flush-probe: DIR and INTERVAL_MS must be set');
const file = path.join(dir, `cse-flush-probe-${process.pid}`);
const page = Buffer.alloc(8192, 0x5a);
// A ring of 16 MB, the size of a WAL segment, written over again and again.
const ring = 16 * 1024 * 1024;

const fd = fs.openSync(file, 'w');
const chunk = Buffer.alloc(1024 * 1024);
for (let offset = 0; offset < ring; offset += chunk.length) fs.writeSync(fd, chunk, 0, chunk.length, offset);
fs.fsyncSync(fd);

const flushes: [at: number, ms: number][] = [];
let offset = 0;
let stopping = false;

const flushOnce = () => {
  const started = performance.now();
  fs.writeSync(fd, page, 0, page.length, offset);
  fs.fdatasyncSync(fd);
  flushes.push([Date.now(), performance.now() - started]);
  offset = (offset + page.length) % ring;
};

const report = () => {
  fs.closeSync(fd);
  fs.rmSync(file, { force: true });
  process.stdout.write(`${JSON.stringify({ flushes })}\n`);
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
