/** Small helpers shared by the bench scripts in bench/ (run them with `npm run bench`). */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { DEFAULT_DATABASE_URL, withDefaultUser } from '../src/config.js';
import { quoteIdent } from '../src/log/postgres/sql.js';
import { createPool } from '../src/db/pool.js';

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const RESULTS_DIR = path.join(BENCH_DIR, 'results');

export interface BenchArgs {
  /** Multiplies the number of events of every scenario (default 1). */
  scale: number;
  /** Skips the slow steps (e.g. filling the log to 1,000,000 events). */
  quick: boolean;
  /** Measured rounds per scenario; the median is reported. */
  rounds: number | undefined;
  /** Events loaded into each contender's store (then ANALYZE) before measuring: a log that is not new. */
  prefill: number;
  /** Measures sequential scenarios one contender after the other (in blocks) rather than interleaved. */
  blocks: boolean;
}

export function parseArgs(argv: string[] = process.argv.slice(2)): BenchArgs {
  const args: BenchArgs = { scale: 1, quick: false, rounds: undefined, prefill: 0, blocks: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.split('=', 2) as [string, string | undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--scale') args.scale = positive(flag, Number(value()));
    else if (flag === '--rounds') args.rounds = Math.round(positive(flag, Number(value())));
    else if (flag === '--prefill') args.prefill = Math.round(Number(value()));
    else if (flag === '--quick') args.quick = true;
    else if (flag === '--blocks') args.blocks = true;
    else throw new Error(`unknown argument: ${arg} (known: --scale N, --rounds N, --prefill N, --quick, --blocks)`);
  }
  return args;
}

function positive(flag: string, n: number): number {
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} must be a positive number`);
  return n;
}

/** The URL of a bench database: DATABASE_URL (or the default) with its database name replaced. */
export function benchDatabaseUrl(name: string): string {
  const url = new URL(withDefaultUser(process.env.DATABASE_URL || DEFAULT_DATABASE_URL));
  url.pathname = `/${name}`;
  return url.toString();
}

async function withAdminClient<T>(url: string, fn: (client: pg.Client, name: string) => Promise<T>): Promise<T> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    return await fn(client, name);
  } finally {
    await client.end();
  }
}


/**
 * A pool of the bench's. pg-pool's end() resolves before its connections have closed, and a
 * DROP DATABASE ... WITH (FORCE) right after terminates them: without a listener, the 'error' an
 * idle connection then gets crashed the bench.
 */
export function benchPool(url: string, max: number): pg.Pool {
  return createPool({ connectionString: url, max, onError: () => undefined });
}

export async function dropDatabase(url: string): Promise<void> {
  await withAdminClient(url, (client, name) => client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`));
}

/** Drops the database if it exists and creates it empty. */
export async function recreateDatabase(url: string): Promise<void> {
  await withAdminClient(url, async (client, name) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
  });
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Milliseconds since an arbitrary origin, sub-millisecond resolution. */
export const now = () => performance.now();

export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const start = now();
  const value = await fn();
  return { ms: now() - start, value };
}

/** Plain, aligned table lines (no colours): numbers right-aligned, text left-aligned. */
export function formatTable(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((row) => row.map(String))];
  const widths = headers.map((_, c) => Math.max(...cells.map((row) => (row[c] ?? '').length)));
  const numeric = headers.map((_, c) => rows.length > 0 && rows.every((row) => /^[-+]?[\d.,]+[x%]?$|^-$/.test(String(row[c] ?? ''))));
  const line = (row: string[]) =>
    row.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ').trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('-|-');
  return [line(cells[0]!), rule, ...cells.slice(1).map(line)].join('\n');
}

export const fmtInt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '-');
export const fmt = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '-');

export function writeResults(name: string, results: unknown): string {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `${name}.json`);
  const bigints = (_key: string, value: unknown) => (typeof value === 'bigint' ? Number(value) : value);
  fs.writeFileSync(file, JSON.stringify(results, bigints, 2) + '\n');
  return file;
}

/** Facts about the machine and server, stored with the results. */
export async function environment(pool: pg.Pool): Promise<Record<string, unknown>> {
  const { rows } = await pool.query<{ version: string; fsync: string; synchronous_commit: string; shared_buffers: string }>(
    `SELECT version(), current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS synchronous_commit,
            current_setting('shared_buffers') AS shared_buffers`,
  );
  const os = await import('node:os');
  return { node: process.version, cpus: os.cpus().length, platform: `${os.platform()} ${os.release()}`, postgres: rows[0], damon: kernelMemoryMonitors() };
}

const KDAMONDS = '/sys/kernel/mm/damon/admin/kdamonds';

/**
 * The kernel's DAMON monitors that are on (Linux's data access monitor: a kdamond thread samples
 * the accessed bits of memory regions, here to page out cold memory), e.g. "kdamond 0: paddr,
 * sampling every 500 ms, pageout". On the virtual machines these benches were developed on, an
 * append that ran into one of its passes (about every 550 ms) took 15 to 40 ms instead of 3.
 */
export function kernelMemoryMonitors(): string[] {
  const read = (file: string) => {
    try {
      return fs.readFileSync(file, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  let kdamonds: string[];
  try {
    kdamonds = fs.readdirSync(KDAMONDS).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
  return kdamonds
    .map((k) => ({ k, state: read(`${KDAMONDS}/${k}/state`) }))
    .filter(({ state }) => state !== 'off')
    .map(({ k, state }) => {
      // The state file is readable by root only: say so rather than report no monitor.
      if (state === undefined) return `kdamond ${k}: present, state unreadable (not root)`;
      const context = `${KDAMONDS}/${k}/contexts/0`;
      const sampleUs = Number(read(`${context}/monitoring_attrs/intervals/sample_us`));
      const actions = fs.existsSync(`${context}/schemes`)
        ? fs.readdirSync(`${context}/schemes`).filter((name) => /^\d+$/.test(name)).map((i) => read(`${context}/schemes/${i}/action`)).filter(Boolean)
        : [];
      return [`kdamond ${k}: ${read(`${context}/operations`) ?? 'unknown operations'}`, Number.isFinite(sampleUs) ? `sampling every ${sampleUs / 1000} ms` : undefined, ...actions]
        .filter(Boolean)
        .join(', ');
    });
}

// ---------------------------------------------------------------------------------------------
// Payloads: realistic CondaPackageBuildRegistered data (~400 bytes of JSON) and small metadata.

const SUBDIRS = ['linux-64', 'noarch', 'osx-arm64', 'win-64'];

export function packageBuildData(n: number): Record<string, unknown> {
  const sha256 = createHash('sha256').update(String(n)).digest('hex');
  return {
    conda_package_build_id: n,
    package_id: Math.floor(n / 4) + 1,
    channel_id: 1 + (n % 3),
    build: `py311h${sha256.slice(0, 7)}_${n % 5}`,
    build_number: n % 5,
    depends: ['python >=3.11,<3.12.0a0', 'libgcc-ng >=12', 'numpy >=1.23.5,<2.0a0', 'libstdcxx-ng >=12'],
    constrains: ['pyarrow >=11.0.0'],
    md5: sha256.slice(0, 32),
    sha256,
    size: 1_000_000 + ((n * 7919) % 9_000_000),
    subdir: SUBDIRS[n % SUBDIRS.length],
    timestamp: 1_700_000_000_000 + n * 1000,
  };
}

export function smallMetadata(): Record<string, unknown> {
  return { correlation_id: randomUUID(), producer: 'bench', schema_version: 1 };
}

export interface BenchEvent {
  id: string;
  type: string;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

let eventCounter = 0;

/** `n` fresh events (fresh ids), computed before any timing starts. */
export function makeEvents(n: number): BenchEvent[] {
  return Array.from({ length: n }, () => {
    const k = ++eventCounter;
    return { id: randomUUID(), type: 'CondaPackageBuildRegistered', data: packageBuildData(k), metadata: smallMetadata() };
  });
}

// ---------------------------------------------------------------------------------------------
// CPU time of processes of this machine, from /proc (Linux): what a run costs every process that
// takes part, whatever the machine's commits or its other load cost.

export const CLOCK_TICKS_PER_SECOND = 100; // Linux's USER_HZ for /proc/<pid>/stat

/** user + system clock ticks of a process, or undefined if /proc cannot tell (another machine). */
export function processTicks(pid: number): number | undefined {
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/**
 * Clock ticks of every client backend of the pool's database, by pid; undefined when one cannot
 * be read (the server is on another machine). An autovacuum worker is not counted.
 */
export async function backendTicks(pool: pg.Pool): Promise<Map<number, number> | undefined> {
  const { rows } = await pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'");
  const ticks = new Map<number, number>();
  for (const { pid } of rows) {
    const t = processTicks(pid);
    if (t === undefined) return undefined;
    ticks.set(pid, t);
  }
  return ticks;
}

/** The pids of this machine's processes whose command name is `name` (e.g. nats-server). */
export function pidsNamed(name: string): number[] {
  try {
    return fs.readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number).filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === name;
      } catch {
        return false;
      }
    });
  } catch {
    return [];
  }
}
