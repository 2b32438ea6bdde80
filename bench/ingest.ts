/**
 * bench/ingest: NATS ingestion end to end, publish → log → projected tables, against the raw
 * batched-INSERT rate of the same data measured in the same run.
 *
 *   npm run bench -- ingest            200,000 events
 *   npm run bench -- ingest --quick    20,000 events
 *
 * - Workload: a channel sync (CondaPackageRegistered, then CondaPackageBuildRegistered of that
 *   package), the bulk of conda-store's events. 4 publishers, each on its own NATS connection and
 *   owning whole packages, publish with the library client (`publishEvents`: validate, publish,
 *   wait for the JetStream acks, up to 256 outstanding per connection, which keeps the order).
 * - `conda-store-events serve` runs as a child process (the real command: ingestion and
 *   projections), on a stream of its own. The bench reads its debug log lines ("batch applied",
 *   with the position each projection group reached) to know when an event is projected: when
 *   every projection group that handles its type has applied it (a group passes over the others
 *   later, without a transaction: namespace_usage handles none of a channel sync's events).
 * - Throughput: events / (first publish → last event projected by every group that handles it),
 *   after a CHECKPOINT, as the raw baseline before it (each starts with nothing left to flush).
 * - Latency at a fixed 1,000 events/s (10 s; 5 s with --quick): for each event, from the moment
 *   its publish starts to the moment the batch that projects it has committed; p50 and p99. It
 *   runs after a CHECKPOINT, in a steady state rather than during the flush of the burst before.
 * - Raw baseline, same run, same database: the same events written with plain batched INSERTs
 *   (one transaction per batch of the ingester's size, one connection): the events into a copy
 *   of event_store.events without the log's function, locks or keys, and their rows into
 *   constraint-free copies of the projection tables (rows from the same pure handlers). That is
 *   the least work that stores what ingestion stores; the events-only rate is printed beside it.
 *   It runs before serve's throughput run and again after it (A-B-A), each after a CHECKPOINT,
 *   and the verdict takes the mean of the two: one run of it moved by half within an hour.
 *   Target: throughput >= 0.5x the raw rate; p99 < 50 ms at 1,000 events/s.
 * - Latency baseline, same run: after serve has stopped and a CHECKPOINT, as many events at the
 *   same rate through a plain pipeline in a child process (shared/raw-pipeline.ts: pull consumer,
 *   one plain transaction of the same INSERTs, ack), after a second of warm-up; p50 and p99 from
 *   publish to committed. The machine's own tail, which the absolute target does not show.
 * - CPU per event during the throughput run and the latency run, by process (PostgreSQL's client
 *   backends, serve, the NATS server, this bench and its publishers; from /proc, when everything
 *   runs on this machine): the store's own cost, which the ratio to a baseline that moves between
 *   machines does not show.
 * - Whether the kernel runs a DAMON memory monitor (lib.ts, kernelMemoryMonitors): its passes
 *   showed as the latency run's tail on the machines this was developed on.
 * - The disk's flush latency during each latency run (shared/flush-probe.ts, a child process:
 *   8 KB overwritten and fdatasync()ed every 25 ms in a file beside the database's data directory,
 *   figures over the run's measured events): a commit waits for its flush, and a flush that
 *   stalls past 50 ms holds every pipeline past the target.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { StringDecoder } from 'node:string_decoder';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { allProjections } from '../projections/index.js';
import type { Envelope } from '../src/catalogue/index.js';
import { migrateLatest } from '../src/db/migrate.js';
import { PublishNotAcknowledgedError } from '../src/ingest/jetstream-acks.js';
import { publishEvent, publishEvents } from '../src/ingest/publish.js';
import { ensureIngestion, type IngestNames } from '../src/ingest/stream.js';
import {
  backendTicks,
  BENCH_DIR,
  benchDatabaseUrl,
  benchPool,
  CLOCK_TICKS_PER_SECOND,
  dropDatabase,
  environment,
  fmt,
  fmtInt,
  formatTable,
  kernelMemoryMonitors,
  now,
  packageBuildData,
  parseArgs,
  pidsNamed,
  processTicks,
  percentile,
  recreateDatabase,
  timed,
  writeResults,
} from './lib.js';
import { createRawTables, rawWriter, type RawWriter } from './shared/raw-writes.js';

const args = parseArgs();
const total = Math.round((args.quick ? 20_000 : 200_000) * args.scale);
const latencySeconds = args.quick ? 5 : 10;
const RATE = 1000;
const PUBLISHERS = 4;
/** Acknowledgements a publisher waits for at once in the throughput run. */
const IN_FLIGHT = 256;
const BATCH = Number(process.env.INGEST_BATCH ?? 500);
const url = benchDatabaseUrl('cse_bench_ingest');
const natsUrl = process.env.NATS_URL || 'nats://127.0.0.1:4222';
const hex = randomBytes(4).toString('hex');
const names: IngestNames = { stream: `CSE_BENCH_${hex}`, subjectPrefix: `cse-bench-${hex}`, durable: 'bench' };
/** The raw pipeline's stream (the latency baseline). */
const rawNames: IngestNames = { stream: `CSE_BENCH_RAW_${hex}`, subjectPrefix: `cse-bench-raw-${hex}`, durable: 'raw' };
const CHANNELS = 3;
/** Wall-clock milliseconds (sub-millisecond). */
const wallClock = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------------------------------------
// Workload

const envelope = (type: string, stream: string, data: Record<string, unknown>) =>
  ({ id: randomUUID(), type, stream, data, metadata: { producer: 'bench' } }) as Envelope;

/** Packages `first`.. with their builds (3 per package), as per-package event lists, `n` events in all. */
function packages(first: number, n: number): Envelope[][] {
  const result: Envelope[][] = [];
  let emitted = 0;
  for (let p = first; emitted < n; p++) {
    const channelId = 1 + (p % CHANNELS);
    const events = [envelope('CondaPackageRegistered', `conda_package-${p}`, { package_id: p, channel_id: channelId, name: `pkg-${p}`, version: '1.0.0', license: 'BSD-3-Clause', summary: 'bench package' })];
    for (let b = 0; b < 3 && emitted + events.length < n; b++) {
      const k = p * 3 + b;
      events.push(envelope('CondaPackageBuildRegistered', `conda_package-${p}`, { ...packageBuildData(k), package_id: p, channel_id: channelId, conda_package_build_id: k }));
    }
    emitted += events.length;
    result.push(events);
  }
  return result;
}

/** Deals whole packages to the publishers, round robin. */
function deal(perPackage: Envelope[][]): Envelope[][] {
  const lanes: Envelope[][] = Array.from({ length: PUBLISHERS }, () => []);
  perPackage.forEach((events, i) => lanes[i % PUBLISHERS]!.push(...events));
  return lanes;
}

// ---------------------------------------------------------------------------------------------
// The serve child and what its log says

interface Serve {
  child: ChildProcess;
  /** Per projection group, (time, position) of every batch applied, in order. */
  applied: Map<string, { at: number; position: number }[]>;
  /** Batches ingested: when, and how many events each appended (first time in the log; a message published again is not counted). */
  ingested: { at: number; appended: number; position?: number }[];
  ready: Promise<void>;
  exited: Promise<number | null>;
}

function startServe(): Serve {
  // SERVE_NODE_ARGS: extra node options for the serve process (e.g. --cpu-prof to profile it).
  const nodeArgs = (process.env.SERVE_NODE_ARGS ?? '').split(' ').filter(Boolean);
  // serve's log goes to a file that this process reads every few milliseconds, not to a pipe. A
  // write to a pipe wakes its reader: at debug level serve writes a line or two per batch, which
  // were 39 % of its write calls at 1,000 events/s and cost both processes CPU that a serve
  // logging at info level does not spend. The times come from the lines (pino's `time`: serve's
  // wall clock, right after the batch committed), not from when this process reads them.
  // SERVE_LOG: keep that file (to study a run afterwards).
  const logFile = process.env.SERVE_LOG ?? path.join(os.tmpdir(), `cse-bench-serve-${hex}.log`);
  const logFd = fs.openSync(logFile, 'w');
  const child = spawn(process.execPath, [...nodeArgs, path.join(BENCH_DIR, '..', 'bin', 'conda-store-events.js'), 'serve', '--ingest-batch-size', String(BATCH)], {
    env: { ...process.env, DATABASE_URL: url, NATS_URL: natsUrl, NATS_STREAM: names.stream, NATS_SUBJECT_PREFIX: names.subjectPrefix, NATS_DURABLE: names.durable, LOG_LEVEL: 'debug' },
    stdio: ['ignore', process.env.SERVE_STDOUT ? fs.openSync(process.env.SERVE_STDOUT, 'w') : 'ignore', logFd],
  });
  fs.closeSync(logFd); // the child has its own copy
  killOnExit(child);
  const applied = new Map<string, { at: number; position: number }[]>();
  const ingested: Serve['ingested'] = [];
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const onLine = (line: string) => {
    if (!line.startsWith('{')) return;
    const entry = JSON.parse(line) as { msg: string; level: number; time: number; group?: string; position?: number; appended?: number };
    const at = entry.time;
    if (entry.msg === 'batch applied') {
      let list = applied.get(entry.group!);
      if (!list) applied.set(entry.group!, (list = []));
      list.push({ at, position: entry.position! });
    } else if (entry.msg === 'batch ingested') {
      ingested.push({ at, appended: entry.appended!, position: entry.position });
    } else if (entry.msg === 'ingesting events from NATS') {
      onReady();
    } else if (entry.level >= 40) {
      process.stderr.write(`  serve: ${line}\n`);
    }
  };
  const tail = tailLines(logFile, (line) => {
    try {
      onLine(line);
    } catch (error) {
      process.stderr.write(`  serve: a log line the bench cannot read (${(error as Error).message}): ${line}\n`);
    }
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('close', (code) => {
      tail.stop();
      if (!process.env.SERVE_LOG) fs.rmSync(logFile, { force: true });
      resolve(code);
    }),
  );
  return { child, applied, ingested, ready, exited };
}

/** Kills `child` should this process exit first (an error in the bench): no serve left behind, logging at debug level. */
function killOnExit(child: ChildProcess): void {
  const kill = () => child.kill('SIGKILL');
  process.on('exit', kill);
  child.on('close', () => process.off('exit', kill));
}

/** SIGTERM, then SIGKILL if `child` has not exited within 10 s. */
async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * One of the bench's helper scripts (bench/shared/<script>) as a child process, killed if the bench
 * exits: each line it writes on stdout is a JSON object, given to `onEntry`; resolves once it has
 * written {"ready": true}, rejects if it exits before. `exited` settles when it has ended.
 */
async function startHelper<T extends object>(
  script: string, env: Record<string, string>, onEntry: (entry: T) => void,
): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'shared', script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  killOnExit(child);
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  let onReady!: () => void;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const entry = JSON.parse(line) as T & { ready?: true };
    if (entry.ready) onReady();
    else onEntry(entry);
  });
  await Promise.race([ready, exited.then((code) => Promise.reject(new Error(`${script} exited with code ${code} before it was ready`)))]);
  return { child, exited };
}

/** Calls `onLine` for each complete line written to `file`, reading what is new every 10 ms, until stop() (which reads the rest). */
function tailLines(file: string, onLine: (line: string) => void): { stop(): void } {
  const fd = fs.openSync(file, 'r');
  const decoder = new StringDecoder('utf8');
  const chunk = Buffer.alloc(1 << 20);
  let offset = 0;
  let pending = '';
  const read = () => {
    for (let n; (n = fs.readSync(fd, chunk, 0, chunk.length, offset)) > 0; ) {
      offset += n;
      const lines = (pending + decoder.write(chunk.subarray(0, n))).split('\n');
      pending = lines.pop()!;
      lines.forEach(onLine);
    }
  };
  const timer = setInterval(read, 10);
  return {
    stop() {
      clearInterval(timer);
      read();
      fs.closeSync(fd);
    },
  };
}

/**
 * The projection groups that handle any of `types`: the ones that must have applied an event of
 * those types for it to count as projected. (A group passes over events of other types without a
 * transaction, and in serve it is not even woken for them: it reads past them later.)
 */
function groupsHandling(types: Iterable<string>): string[] {
  const wanted = new Set(types);
  return [...new Set(allProjections.filter((p) => Object.keys(p.handlers).some((type) => wanted.has(type))).map((p) => p.group))];
}

/** When the ingester had appended `position` (its batch committed). */
function inLogAt(serve: Serve, position: number): number | undefined {
  return serve.ingested.find((batch) => batch.position !== undefined && batch.position >= position)?.at;
}

/** When every group that handles one of `types` had applied `position` (undefined if not yet). */
function projectedAt(serve: Serve, position: number, types: Iterable<string>): number | undefined {
  let latest = 0;
  for (const group of groupsHandling(types)) {
    const list = serve.applied.get(group) ?? [];
    // binary search: first batch at or past the position
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid]!.position >= position) hi = mid;
      else lo = mid + 1;
    }
    if (lo === list.length) return undefined;
    latest = Math.max(latest, list[lo]!.at);
  }
  return latest;
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

// ---------------------------------------------------------------------------------------------
// Runs

/** Publishes that JetStream did not acknowledge in time, sent again (printed with the results). */
let sentAgain = 0;
const SEND_AGAIN_AT_MOST = 3;

/**
 * `publish`, sent again when JetStream's acknowledgement did not come in time, as a producer
 * does (the library's documented recovery): such a message may or may not be stored, and the
 * same envelopes again (same ids) end up in the log once, through JetStream's duplicate window
 * and the ingester. The delay counts in the figures. (Three of this bench's first four runs on
 * the machine of 2026-12-07 lost their first publishes so, all 256 of publisher 0's, sent before
 * the other publishers validated their events for 5 s in the same process: the acknowledgement
 * collector counted that time against the server. It no longer does (jetstream-acks.ts).)
 */
async function sentAgainUntilAcknowledged(publisher: string, publish: () => Promise<unknown>): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await publish();
      return;
    } catch (error) {
      if (!(error instanceof PublishNotAcknowledgedError) || error.reason !== 'timeout' || attempt > SEND_AGAIN_AT_MOST) throw error;
      sentAgain++;
      console.error(`${publisher}: ${error.message}; publishing again (the same ids)`);
    }
  }
}

/**
 * Publishes each lane on its own connection. As fast as possible: `publishEvents` with up to
 * IN_FLIGHT acknowledgements outstanding per publisher (one connection keeps its order). Paced:
 * each event at its due time (lane i's k-th event at t0 + (k * PUBLISHERS + i) / pace s), without
 * waiting for the previous one's acknowledgement. `started` gets each event's due time, or its
 * publish time if that came first, on Date.now()'s clock (the clock of serve's log lines and of the
 * raw pipeline's, which end each latency): timed from its publish when the publisher ran late (its
 * timer behind, the two cores busy), an event would leave that delay out of its latency, and a
 * stall of the machine out of the p99 (coordinated omission). `lags` gets how late each was sent.
 */
async function publishLanes(
  connections: NatsConnection[], lanes: Envelope[][], into: IngestNames, started?: Map<string, number>, pace?: number, lags?: number[],
): Promise<void> {
  const t0 = now();
  const epoch0 = Date.now() - (now() - t0);
  await Promise.all(
    lanes.map(async (lane, i) => {
      const nc = connections[i]!;
      if (!pace) {
        await sentAgainUntilAcknowledged(`publisher ${i}`, () => publishEvents(nc, lane, { names: into, maxInFlight: IN_FLIGHT }));
        return;
      }
      const acks: Promise<unknown>[] = [];
      for (let k = 0; k < lane.length; k++) {
        const due = t0 + ((k * PUBLISHERS + i) * 1000) / pace;
        const wait = due - now();
        if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
        const sentAt = now();
        started!.set(lane[k]!.id, epoch0 + (Math.min(due, sentAt) - t0));
        lags?.push(Math.max(0, sentAt - due));
        acks.push(sentAgainUntilAcknowledged(`publisher ${i}`, () => publishEvent(nc, lane[k]!, { names: into })));
      }
      await Promise.all(acks);
    }),
  );
}

async function positionsOf(pool: pg.Pool, ids: string[]): Promise<Map<string, number>> {
  const { rows } = await pool.query<{ id: string; position: string }>('SELECT id::text, global_position::text AS position FROM event_store.events WHERE id = ANY($1::uuid[])', [ids]);
  return new Map(rows.map((row) => [row.id, Number(row.position)]));
}

/**
 * The raw baseline (the same events, and their projected rows, in plain batched INSERTs:
 * shared/raw-writes.ts): its rate (ev/s) for `events`, written by `runs` in turn into tables made afresh
 * (createRawTables), `between` awaited before each run.
 */
async function rawRates(pool: pg.Pool, events: Envelope[], runs: (keyof RawWriter)[], between: (run: keyof RawWriter) => Promise<unknown>): Promise<number[]> {
  await createRawTables(pool);
  const client = await pool.connect();
  try {
    const writer = rawWriter(client);
    const rates: number[] = [];
    for (const run of runs) {
      await between(run);
      const started = now();
      for (let i = 0; i < events.length; i += BATCH) await writer[run](events.slice(i, i + BATCH));
      rates.push(events.length / ((now() - started) / 1000));
    }
    return rates;
  } finally {
    client.release();
  }
}

/**
 * The latency baseline: `latencyPackages` published at RATE, as in serve's latency run, into a
 * stream of their own that the raw pipeline (shared/raw-pipeline.ts, a child process) consumes.
 * Returns each event's publish time and publish → committed time. The raw tables must exist (rawRates).
 */
async function rawPipelineLatencies(connections: NatsConnection[], rawNames: IngestNames, latencyPackages: Envelope[][]): Promise<{ at: number; ms: number }[]> {
  await ensureIngestion(connections[0]!, rawNames);
  const committed = new Map<string, number>();
  const { child, exited } = await startHelper<{ at: number; ids: string[] }>(
    'raw-pipeline.ts',
    { DATABASE_URL: url, NATS_URL: natsUrl, RAW_STREAM: rawNames.stream, RAW_DURABLE: rawNames.durable, BATCH: String(BATCH) },
    (entry) => {
      for (const id of entry.ids) committed.set(id, entry.at);
    },
  );
  try {
    const run = async (packages: Envelope[][]) => {
      const started = new Map<string, number>();
      await publishLanes(connections, deal(packages), rawNames, started, RATE);
      await waitFor(async () => {
        if (child.exitCode !== null) throw new Error(`the raw pipeline exited with code ${child.exitCode}`);
        return [...started.keys()].every((id) => committed.has(id));
      }, 'every event through the raw pipeline');
      return [...started].map(([id, at]) => ({ at, ms: committed.get(id)! - at }));
    };
    // A second of warm-up, left out: the pipeline's first transactions (a new process and
    // connection, statements planned for the first time) were slow for about half a second, where
    // serve has been running since the throughput run.
    await run(packages(30_000_000, RATE));
    return await run(latencyPackages);
  } finally {
    await stopChild(child, exited);
  }
}

// ---------------------------------------------------------------------------------------------
// The disk's flushes during each latency run (shared/flush-probe.ts): a commit waits for its WAL
// flush, and on the virtual disks this was developed on a flush of 0.1 ms sometimes took 100 ms to
// seconds with the machine idle. A run that met such a stall could not meet p99 < 50 ms, whatever
// the pipeline; the probe tells those runs from the others.

/** Milliseconds between the probe's flushes, and the flush time from which a flush counts as stalled (the latency target). */
const PROBE_INTERVAL_MS = 25;
const STALL_MS = 50;

/** The probe's flushes over the measured events of a run: [from, to], epoch ms. */
interface FlushFigures {
  flushes: number;
  p50: number;
  p99: number;
  max: number;
  stalls: { at: number; ms: number }[];
}

/**
 * Where the probe writes: beside the database's data directory when the server runs on this
 * machine and the directory can be written (the disk of its WAL, unless pg_wal is moved), else
 * the temp directory, said so.
 */
async function flushProbeDirectory(pool: pg.Pool): Promise<{ dir: string; besideDatabase: boolean }> {
  const local = ['127.0.0.1', 'localhost', '::1', '[::1]', ''].includes(new URL(url).hostname);
  const { rows } = await pool.query<{ data_directory: string }>('SHOW data_directory').catch(() => ({ rows: [] as { data_directory: string }[] }));
  const parent = rows[0] && path.dirname(rows[0].data_directory);
  if (local && parent) {
    try {
      fs.accessSync(parent, fs.constants.W_OK);
      return { dir: parent, besideDatabase: true };
    } catch {
      // not ours to write: the temp directory
    }
  }
  return { dir: os.tmpdir(), besideDatabase: false };
}

/**
 * Starts the probe; stop() ends it and gives its flushes ([ended at, ms] each), or the reason it
 * has none: a probe that failed costs the run its disk figures, not its other figures.
 */
async function startFlushProbe(dir: string): Promise<{ stop(): Promise<[number, number][] | string> }> {
  let flushes: [number, number][] | undefined;
  const { child, exited } = await startHelper<{ flushes: [number, number][] }>('flush-probe.ts', { DIR: dir, INTERVAL_MS: String(PROBE_INTERVAL_MS) }, (entry) => {
    flushes = entry.flushes;
  });
  // Its file, should it die before it removes it.
  const removed = exited.finally(() => fs.rmSync(path.join(dir, `cse-flush-probe-${child.pid}`), { force: true }));
  return {
    async stop() {
      await stopChild(child, removed);
      return flushes ?? `the flush probe ended without its figures (exit code ${child.exitCode}, signal ${child.signalCode})`;
    },
  };
}

/** The flushes that overlapped the measured events (`spans`), and those of them that stalled. */
function flushFigures(flushes: [number, number][], spans: readonly { at: number; ms: number }[]): FlushFigures {
  const from = Math.min(...spans.map((span) => span.at));
  const to = Math.max(...spans.map((span) => span.at + span.ms));
  const inWindow = flushes.filter(([at, ms]) => at > from && at - ms < to);
  const times = inWindow.map(([, ms]) => ms);
  return {
    flushes: inWindow.length,
    p50: percentile(times, 50),
    p99: percentile(times, 99),
    max: times.length ? Math.max(...times) : NaN,
    stalls: inWindow.filter(([, ms]) => ms > STALL_MS).map(([at, ms]) => ({ at, ms })),
  };
}

/** Of the events at the target or slower (`spans`: when each started, how long it took), how many were in flight while a flush stalled. */
function slowDuringStalls(spans: readonly { at: number; ms: number }[], figures: FlushFigures): { slow: number; duringStalls: number } {
  const slow = spans.filter((span) => span.ms >= STALL_MS);
  const inStall = (span: { at: number; ms: number }) => figures.stalls.some((stall) => span.at < stall.at && span.at + span.ms > stall.at - stall.ms);
  return { slow: slow.length, duringStalls: slow.filter(inStall).length };
}

/** The disk's line of a latency run, and its figures for the results file. */
function flushReport(probe: [number, number][] | string, spans: readonly { at: number; ms: number }[], where: { dir: string; besideDatabase: boolean }) {
  if (typeof probe === 'string') return { line: `the disk during this run: not measured (${probe})`, figures: null, slow: null };
  const figures = flushFigures(probe, spans);
  const slow = slowDuringStalls(spans, figures);
  const stalls = figures.stalls.map((stall) => fmt(stall.ms, 1)).join(', ');
  const line =
    `the disk during this run's measured events (8 KB overwritten and fdatasync()ed every ${PROBE_INTERVAL_MS} ms in ${where.dir}${where.besideDatabase ? ', beside the database' : ', not the database\'s disk'}): ` +
    `${fmtInt(figures.flushes)} flushes, p50 ${fmt(figures.p50, 2)} ms, p99 ${fmt(figures.p99, 2)} ms, max ${fmt(figures.max, 1)} ms; ` +
    `${figures.stalls.length} over ${STALL_MS} ms${stalls ? ` (${stalls} ms)` : ''}; ` +
    `events at ${STALL_MS} ms or more: ${fmtInt(slow.slow)}, ${fmtInt(slow.duringStalls)} of them in flight during such a flush`;
  return { line, figures, slow };
}

// ---------------------------------------------------------------------------------------------
// Where the machine's CPU goes during the throughput run: the ratio to the raw baseline follows
// that baseline, which moved by a factor of two between machines; CPU per event by process is the
// store's own cost. From /proc (Linux, everything on this machine); client backends that end
// during the run are missed (serve keeps its connections).

interface CpuSnapshot {
  at: number;
  backends: Map<number, number>;
  serve: number;
  nats: number;
  bench: NodeJS.CpuUsage;
}

async function cpuSnapshot(pool: pg.Pool, servePid: number | undefined): Promise<CpuSnapshot | undefined> {
  const backends = await backendTicks(pool);
  const serve = servePid === undefined ? undefined : processTicks(servePid);
  if (!backends || serve === undefined) return undefined;
  // The NATS server, when it runs on this machine (none found: 0, and the figure says so).
  const nats = pidsNamed('nats-server').reduce((sum, pid) => sum + (processTicks(pid) ?? 0), 0);
  return { at: now(), backends, serve, nats, bench: process.cpuUsage() };
}

interface CpuPerEvent {
  postgresUs: number;
  serveUs: number;
  natsUs: number;
  benchUs: number;
  coresBusy: number;
}

function cpuPerEvent(before: CpuSnapshot, after: CpuSnapshot, events: number): CpuPerEvent {
  const us = (ticks: number) => ((ticks / CLOCK_TICKS_PER_SECOND) * 1e6) / events;
  let backends = 0;
  for (const [pid, ticks] of after.backends) backends += ticks - (before.backends.get(pid) ?? 0);
  const bench = process.cpuUsage(before.bench);
  const seconds = (after.at - before.at) / 1000;
  const busyTicks = backends + (after.serve - before.serve) + (after.nats - before.nats);
  return {
    postgresUs: us(backends),
    serveUs: us(after.serve - before.serve),
    natsUs: us(after.nats - before.nats),
    benchUs: (bench.user + bench.system) / events,
    coresBusy: (busyTicks / CLOCK_TICKS_PER_SECOND + (bench.user + bench.system) / 1e6) / seconds,
  };
}

function describeCpu(cpu: CpuPerEvent | undefined, run: string): string {
  if (!cpu) return `CPU per event in ${run}: not measured (/proc cannot tell: PostgreSQL on another machine, or not Linux)`;
  return `CPU per event in ${run} (/proc): PostgreSQL client backends ${fmt(cpu.postgresUs, 1)} µs, serve ${fmt(cpu.serveUs, 1)} µs, ` +
    `NATS server ${cpu.natsUs > 0 ? `${fmt(cpu.natsUs, 1)} µs` : 'not on this machine'}, this bench (publishers) ${fmt(cpu.benchUs, 1)} µs; ` +
    `${fmt(cpu.coresBusy, 2)} of ${os.cpus().length} cores busy`;
}

async function main() {
  console.log(`bench/ingest: ${fmtInt(total)} events (a channel sync), ${PUBLISHERS} publishers, serve --ingest-batch-size ${BATCH}`);
  await recreateDatabase(url);
  await migrateLatest(url);
  const pool = benchPool(url, 2);
  const env = await environment(pool);
  const probeWhere = await flushProbeDirectory(pool);
  // (CHECKPOINT needs a superuser or pg_checkpoint: without it, the run goes on and says so.)
  const checkpointBefore = async (run: string) => {
    const checkpoint = await timed(() => pool.query('CHECKPOINT').then(() => true, (error: Error) => {
      console.log(`checkpoint before ${run}: not run (${error.message}); it may overlap the checkpoint of the writes before it`);
      return false;
    }));
    if (checkpoint.value) console.log(`checkpoint before ${run}: ${fmt(checkpoint.ms / 1000, 1)} s`);
    return checkpoint;
  };
  const connections = await Promise.all(Array.from({ length: PUBLISHERS }, (_, i) => connect({ servers: natsUrl, name: `bench publisher ${i}` })));
  const admin = connections[0]!;
  await ensureIngestion(admin, names);
  const serve = startServe();
  try {
    await serve.ready;

    // Channels first (every package needs its channel).
    for (let c = 1; c <= CHANNELS; c++) await publishEvent(admin, envelope('CondaChannelRegistered', `conda_channel-${c}`, { channel_id: c, name: `channel-${c}` }), { names });
    await waitFor(() => serve.ingested.reduce((n, batch) => n + batch.appended, 0) >= CHANNELS, 'the channels');

    // 1. Throughput.
    const throughputPackages = packages(1, total);
    const throughputEvents = throughputPackages.flat();
    if (throughputEvents.length !== total) throw new Error(`workload of ${throughputEvents.length} events, expected ${total}`);
    // Every run (the baseline's, serve's) starts after a CHECKPOINT, with nothing left to flush:
    // each writes hundreds of MB of WAL, and the checkpoint that follows one overlapped the next
    // (the append bench does the same before each of its measured runs).
    console.log('raw baseline: the same events in plain batched INSERTs...');
    const [eventsOnly, withRowsBefore] = await rawRates(pool, throughputEvents, ['eventsOnly', 'withRows'], (run) =>
      checkpointBefore(run === 'withRows' ? 'the raw baseline with rows' : 'the raw baseline'));
    await checkpointBefore('the throughput run');
    console.log(`throughput: publishing ${fmtInt(total)} events as fast as possible...`);
    const cpuBefore = await cpuSnapshot(pool, serve.child.pid);
    const t0 = wallClock();
    await publishLanes(connections, deal(throughputPackages), names);
    const published = wallClock();
    const ingestedEvents = () => serve.ingested.reduce((n, batch) => n + batch.appended, 0);
    await waitFor(() => ingestedEvents() >= CHANNELS + total, 'every event in the log');
    const head = Number((await pool.query<{ head: string }>('SELECT max(global_position)::text AS head FROM event_store.events')).rows[0]!.head);
    const throughputTypes = new Set(throughputEvents.map((e) => e.type));
    await waitFor(() => projectedAt(serve, head, throughputTypes) !== undefined, 'every event projected');
    const projected = projectedAt(serve, head, throughputTypes)!;
    const cpuAfter = cpuBefore && (await cpuSnapshot(pool, serve.child.pid));
    // The bench's own process.cpuUsage() includes the publishers and its reading of serve's log.
    const cpu = cpuBefore && cpuAfter ? cpuPerEvent(cpuBefore, cpuAfter, total) : undefined;
    const ingestedAll = serve.ingested.reduce((acc, b) => (acc.n < CHANNELS + total ? { n: acc.n + b.appended, at: b.at } : acc), { n: 0, at: 0 }).at;
    const seconds = (projected - t0) / 1000;
    const rate = total / seconds;
    // The raw baseline with rows again, after serve's run (A-B-A): on these machines one run of it
    // ranged from 12,300 to 19,000 ev/s within an hour, and the ratio moved with it. The verdict
    // takes their mean, measured around serve's run.
    console.log('raw baseline again, after the throughput run...');
    const [withRowsAfter] = await rawRates(pool, throughputEvents, ['withRows'], () => checkpointBefore('the raw baseline after the throughput run'));
    // The arithmetic mean: the higher of the two usual means of two rates (the harmonic one, the
    // rate of both runs' work in their total time, is lower), so the ratio is never flattered.
    const raw = { eventsOnly: eventsOnly!, withRowsBefore: withRowsBefore!, withRowsAfter: withRowsAfter!, withRowsMean: (withRowsBefore! + withRowsAfter!) / 2 };

    // 2. Latency at a fixed rate, in a steady state. The burst above leaves PostgreSQL a
    //    checkpoint to write (hundreds of MB of WAL): run during it, the latency run measured the
    //    disk's flush of the burst (commits waiting 50-75 ms on fsync while the checkpoint
    //    synced, p99 42-88 ms), not ingestion at 1,000 events/s. The checkpoint goes first.
    const checkpoint = await checkpointBefore('the latency run');
    const latencyCount = RATE * latencySeconds;
    console.log(`latency: ${fmtInt(latencyCount)} events at ${fmtInt(RATE)} events/s...`);
    const latencyPackages = packages(10_000_000, latencyCount);
    const latencyEvents = latencyPackages.flat();
    const latencyStarted = new Map<string, number>();
    const latencyCpuBefore = await cpuSnapshot(pool, serve.child.pid);
    const probe = await startFlushProbe(probeWhere.dir);
    const l0 = now();
    const lags: number[] = [];
    await publishLanes(connections, deal(latencyPackages), names, latencyStarted, RATE, lags);
    const achievedRate = latencyCount / ((now() - l0) / 1000);
    await waitFor(() => ingestedEvents() >= CHANNELS + total + latencyCount, 'every latency event in the log');
    // The last batch's position is the highest of the run (serve ingests nothing else): every
    // event projected, then the CPU figures, before the bench's own query for the positions.
    const maxPosition = serve.ingested[serve.ingested.length - 1]!.position!;
    const latencyTypes = new Set(latencyEvents.map((e) => e.type));
    await waitFor(() => projectedAt(serve, maxPosition, latencyTypes) !== undefined, 'every latency event projected');
    const flushes = await probe.stop();
    const latencyCpuAfter = latencyCpuBefore && (await cpuSnapshot(pool, serve.child.pid));
    const latencyCpu = latencyCpuBefore && latencyCpuAfter ? cpuPerEvent(latencyCpuBefore, latencyCpuAfter, latencyCount) : undefined;
    const positions = await positionsOf(pool, latencyEvents.map((e) => e.id));
    if (Math.max(...positions.values()) !== maxPosition) throw new Error(`the latency run's last position is ${Math.max(...positions.values())}, its last batch's ${maxPosition}`);
    const latencies = latencyEvents.map((e) => projectedAt(serve, positions.get(e.id)!, [e.type])! - latencyStarted.get(e.id)!);
    const toLog = latencyEvents.map((e) => (inLogAt(serve, positions.get(e.id)!) ?? NaN) - latencyStarted.get(e.id)!);
    const logToProjected = latencyEvents.map((e) => projectedAt(serve, positions.get(e.id)!, [e.type])! - (inLogAt(serve, positions.get(e.id)!) ?? NaN));
    const serveDisk = flushReport(flushes, latencyEvents.map((e, i) => ({ at: latencyStarted.get(e.id)!, ms: latencies[i]! })), probeWhere);
    const p50 = percentile(latencies, 50);
    const p99 = percentile(latencies, 99);
    // LATENCY_DUMP: a file that gets one line per latency event (ms since the run began, then
    // publish → projected, → in the log, log → projected), to see when the slow ones happened.
    if (process.env.LATENCY_DUMP) {
      const first = Math.min(...latencyStarted.values());
      fs.writeFileSync(process.env.LATENCY_DUMP, latencyEvents.map((e, i) =>
        [latencyStarted.get(e.id)! - first, latencies[i], toLog[i], logToProjected[i]].map((v) => v!.toFixed(1)).join('\t')).join('\n') + '\n');
    }

    serve.child.kill('SIGTERM');
    const code = await serve.exited;
    const { rows: [check] } = await pool.query<{ events: string; rejected: string }>(
      'SELECT (SELECT count(*) FROM event_store.events)::text AS events, (SELECT count(*) FROM event_store.rejected_messages)::text AS rejected',
    );
    const expectedEvents = CHANNELS + total + latencyCount;
    if (Number(check!.events) !== expectedEvents || Number(check!.rejected) !== 0) {
      throw new Error(`the log holds ${check!.events} events (expected ${expectedEvents}), ${check!.rejected} rejected messages`);
    }

    // 3. The latency baseline: the same rate through the raw pipeline, serve stopped, after a
    //    CHECKPOINT as serve's run: what this machine's tail is without the store.
    await checkpointBefore('the raw latency run');
    console.log(`raw latency baseline: ${fmtInt(latencyCount)} events at ${fmtInt(RATE)} events/s through a plain pipeline...`);
    const rawProbe = await startFlushProbe(probeWhere.dir);
    const rawRun = await rawPipelineLatencies(connections, rawNames, packages(20_000_000, latencyCount));
    const rawFlushes = await rawProbe.stop();
    const rawLatencies = rawRun.map((e) => e.ms);
    const rawLatency = { p50: percentile(rawLatencies, 50), p99: percentile(rawLatencies, 99), max: Math.max(...rawLatencies) };
    const rawDisk = flushReport(rawFlushes, rawRun, probeWhere);
    // LATENCY_DUMP.raw: the same for the raw pipeline (ms since its run began, publish → committed).
    if (process.env.LATENCY_DUMP) {
      const first = Math.min(...rawRun.map((e) => e.at));
      fs.writeFileSync(`${process.env.LATENCY_DUMP}.raw`, rawRun.map((e) => `${(e.at - first).toFixed(1)}\t${e.ms.toFixed(1)}`).join('\n') + '\n');
    }

    const ratio = rate / raw.withRowsMean;
    console.log();
    console.log(
      formatTable(
        ['run', 'events', 'seconds', 'ev/s'],
        [
          [`publish (${PUBLISHERS} publishers, ${IN_FLIGHT} acks in flight each)`, fmtInt(total), fmt((published - t0) / 1000, 1), fmtInt(total / ((published - t0) / 1000))],
          ['publish → in the log', fmtInt(total), fmt((ingestedAll - t0) / 1000, 1), fmtInt(total / ((ingestedAll - t0) / 1000))],
          ['publish → projected (sustained)', fmtInt(total), fmt(seconds, 1), fmtInt(rate)],
          ['raw batched INSERT: events + their table rows, before serve\'s run', fmtInt(total), fmt(total / raw.withRowsBefore, 1), fmtInt(raw.withRowsBefore)],
          ['raw batched INSERT: events + their table rows, after serve\'s run', fmtInt(total), fmt(total / raw.withRowsAfter, 1), fmtInt(raw.withRowsAfter)],
          ['raw batched INSERT: events only', fmtInt(total), fmt(total / raw.eventsOnly, 1), fmtInt(raw.eventsOnly)],
        ],
      ),
    );
    console.log(
      `\nthroughput vs raw batched INSERT (events + rows, the mean of the runs before and after): ${fmt(ratio, 2)}x (target >= 0.5x) ${ratio >= 0.5 ? 'PASS' : 'MISS'}` +
        ` (against each: ${fmt(rate / raw.withRowsBefore, 2)}x, ${fmt(rate / raw.withRowsAfter, 2)}x)`,
    );
    console.log(`throughput vs raw batched INSERT (events only, into a copy of the log's table; for information): ${fmt(rate / raw.eventsOnly, 2)}x`);
    console.log(describeCpu(cpu, 'the throughput run'));
    console.log(
      `latency publish → projected at ${fmtInt(achievedRate)} events/s (${fmtInt(latencyCount)} events): p50 ${fmt(p50, 1)} ms, p99 ${fmt(p99, 1)} ms, max ${fmt(Math.max(...latencies), 1)} ms (target p99 < 50 ms) ${p99 < 50 ? 'PASS' : 'MISS'}` +
        (p99 >= 50 && serveDisk.figures?.stalls.length ? ` (a flush of the disk took ${fmt(serveDisk.figures.max, 1)} ms during this run: below)` : ''),
    );
    console.log(
      `  timed from each event's due time (publisher late by p99 ${fmt(percentile(lags, 99), 1)} ms, at most ${fmt(Math.max(...lags), 1)} ms; ` +
        'an event sent late is timed from when it was due), on the clock of serve\'s log lines',
    );
    console.log(`  publish → in the log (ingestion): p50 ${fmt(percentile(toLog, 50), 1)} ms, p99 ${fmt(percentile(toLog, 99), 1)} ms`);
    console.log(`  in the log → projected (projection service): p50 ${fmt(percentile(logToProjected, 50), 1)} ms, p99 ${fmt(percentile(logToProjected, 99), 1)} ms`);
    console.log(`  ${serveDisk.line}`);
    console.log(
      `  baseline, same rate, same run: a plain pipeline (pull consumer → one transaction of plain INSERTs of the events and their rows → ack): ` +
        `p50 ${fmt(rawLatency.p50, 1)} ms, p99 ${fmt(rawLatency.p99, 1)} ms, max ${fmt(rawLatency.max, 1)} ms`,
    );
    console.log(`    ${rawDisk.line}`);
    const monitors = kernelMemoryMonitors();
    console.log(`  ${describeCpu(latencyCpu, 'the latency run')}`);
    if (monitors.length > 0) console.log(`  this kernel runs DAMON (${monitors.join('; ')}): appends that run into one of its passes can take 15 to 40 ms (README, "Ingestion")`);
    if (sentAgain > 0) console.log(`publishes sent again after JetStream did not acknowledge them within 5 s: ${sentAgain} (their delay counts in the figures above)`);
    if (code !== 0) console.log(`serve exited with code ${code}`);
    const file = writeResults('ingest', {
      date: new Date().toISOString(),
      total,
      publishers: PUBLISHERS,
      batch: BATCH,
      environment: env,
      throughput: { seconds, rate, publishSeconds: (published - t0) / 1000, inLogSeconds: (ingestedAll - t0) / 1000, cpuPerEvent: cpu ?? null },
      raw,
      ratio,
      sentAgain,
      latency: {
        checkpointBeforeMs: checkpoint.value ? checkpoint.ms : null,
        rate: achievedRate,
        events: latencyCount,
        p50,
        p99,
        max: Math.max(...latencies),
        toLog: { p50: percentile(toLog, 50), p99: percentile(toLog, 99) },
        logToProjected: { p50: percentile(logToProjected, 50), p99: percentile(logToProjected, 99) },
        rawPipeline: { ...rawLatency, disk: rawDisk.figures, slow: rawDisk.slow },
        disk: serveDisk.figures,
        slow: serveDisk.slow,
        flushProbeDirectory: probeWhere,
        publisherLate: { p99: percentile(lags, 99), max: Math.max(...lags) },
        cpuPerEvent: latencyCpu ?? null,
      },
    });
    console.log(`results: ${file}`);
  } finally {
    if (serve.child.exitCode === null) serve.child.kill('SIGKILL');
    const jsm = await admin.jetstreamManager();
    for (const stream of [names.stream, rawNames.stream]) await jsm.streams.delete(stream).catch(() => undefined);
    await Promise.all(connections.map((nc) => nc.close()));
    await pool.end();
    if (!process.env.KEEP_BENCH_DB) await dropDatabase(url);
  }
}

await main();
