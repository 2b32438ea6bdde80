/**
 * Helpers of test/rebuild.test.ts: the `rebuild-projections` CLI (and `npx ...`) as child
 * processes, run to completion or started and killed; databases copied from a template; and what a
 * rebuild must leave as it was, read back in a form `t.deepEqual` compares: a digest of every
 * projection table (rows and id sequence), every table's definition, the live checkpoints with
 * their fingerprints, and the leftovers of an interrupted rebuild.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { Envelope } from '../../src/catalogue/index.js';
import { allProjections } from '../../projections/index.js';
import { cliEnv, root, waitForExit, watchChild, type CliResult, type Watched } from './cli.js';
import { describeTable, listRelations, listSequences, type Queryable, type Relation, type SequenceDefinition, type TableDefinition } from './introspect.js';

export const rebuildCliPath = path.join(root, 'bin', 'rebuild-projections.js');

/** Every table a projection owns: conda-store's sixteen and the namespace_usage read model's three. */
export const PROJECTION_TABLES: string[] = allProjections.flatMap((projection) => projection.tables).sort();

/** Advisory-lock class of a running rebuild (src/projection/rebuild.ts). */
const REBUILD_LOCK_CLASS = 7405;


// ---------------------------------------------------------------------------------------------
// Databases

import { connect, copyOf, dropDatabase, urlFor, withAdmin, withClient } from './database.js';
import { quoteIdent as quote } from '../../src/log/postgres/sql.js';

export { connect, copyOf, dropDatabase, urlFor, withAdmin };

/** Opens a client on `url`, runs `fn`, closes it. */
export const withDatabase = withClient;


// ---------------------------------------------------------------------------------------------
// Child processes

/** A JSON log line of a child's stderr. */
export interface Running extends Watched {
  /** The phase the rebuild paused at (CSE_REBUILD_PAUSE_AT), once it has. */
  pausedAt(): string | undefined;
}

/**
 * Starts `node bin/rebuild-projections.js ARGS` against `url` (stdout and stderr always drained);
 * SIGKILLed when the test ends if still running.
 */
export function startRebuild(t: ExecutionContext, url: string, args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [rebuildCliPath, ...args], {
    cwd: root,
    env: cliEnv({ DATABASE_URL: url, ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const watched = watchChild(t, child, `rebuild-projections ${args.join(' ')}`);
  return { ...watched, pausedAt: () => watched.lines.find((line) => line.msg === 'rebuild paused')?.phase as string | undefined };
}

/** Runs `node bin/rebuild-projections.js ARGS` against `url` to completion. */
export function runRebuild(url: string, args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliResult> {
  const child = spawn(process.execPath, [rebuildCliPath, ...args], { cwd: root, env: cliEnv({ DATABASE_URL: url, ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
  return waitForExit(child, timeoutMs);
}

/** Runs `npx ARGS` in the repository, as a maintainer types it (`npx knex migrate:latest`, `npx rebuild-projections`). */
export function runNpx(url: string, args: string[], timeoutMs = 180_000, env: Record<string, string> = {}): Promise<CliResult> {
  const child = spawn('npx', ['--no-install', ...args], { cwd: root, env: cliEnv({ DATABASE_URL: url, ...env }), stdio: ['ignore', 'pipe', 'pipe'] });
  return waitForExit(child, timeoutMs);
}

export const shown = (result: CliResult) => `exit ${result.code} ${result.signal ?? ''}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;

/** Polls `probe` until it returns something other than undefined/false; fails after the deadline. */
export async function until<T>(what: string | (() => string), probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Waits until no session of this database holds a rebuild lock (a killed rebuild's sessions are gone). */
export async function noRebuildRunning(db: Queryable): Promise<void> {
  await until('the killed rebuild to release its lock', async () => {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks
        WHERE locktype = 'advisory' AND classid = $1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [REBUILD_LOCK_CLASS],
    );
    return rows[0]!.n === 0;
  });
}

// ---------------------------------------------------------------------------------------------
// What a rebuild must keep

/** The SQL of a table's checksum: md5 of every row's text, in a fixed order. */
export const checksumSql = (table: string) => `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS checksum FROM public.${quote(table)} t`;

/**
 * A digest per projection table: its row count and the md5 of every row (ids included), plus the
 * state of the sequences its columns own. Equal digests: same rows, same ids, same sequences.
 */
export async function digests(db: Queryable): Promise<Record<string, string>> {
  const { rows: sequences } = await db.query<{ table: string; sequence: string }>(
    `SELECT t.relname::text AS table, s.relname::text AS sequence
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_class t ON t.oid = d.refobjid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = 'public' AND d.deptype = 'a' AND t.relname = ANY($1)`,
    [PROJECTION_TABLES],
  );
  const result: Record<string, string> = {};
  for (const table of PROJECTION_TABLES) {
    const { rows } = await db.query<{ checksum: string; count: number }>(
      `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS checksum, count(*)::int AS count FROM public.${quote(table)} t`,
    );
    let digest = `${rows[0]!.count} rows ${rows[0]!.checksum}`;
    for (const { sequence } of sequences.filter((s) => s.table === table)) {
      const { rows: state } = await db.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM public.${quote(sequence)}`);
      digest += ` ${sequence} ${state[0]!.last_value}/${state[0]!.is_called}`;
    }
    result[table] = digest;
  }
  return result;
}

export interface SchemaSnapshot {
  /** Each projection table: columns, constraints (names, FK actions), indexes, owned sequences. */
  tables: Record<string, TableDefinition>;
  /** Everything in `public`: tables, sequences, indexes. */
  relations: Relation[];
  sequences: SequenceDefinition[];
  /** Privileges granted on the projection tables and their sequences, and their owners. */
  privileges: string[];
}

export async function schemaSnapshot(db: Queryable): Promise<SchemaSnapshot> {
  const tables: Record<string, TableDefinition> = {};
  for (const table of PROJECTION_TABLES) tables[table] = await describeTable(db, 'public', table);
  const { rows } = await db.query<{ line: string }>(
    `SELECT c.relname || ' owner ' || pg_get_userbyid(c.relowner) || ' acl ' || coalesce(c.relacl::text, '-') AS line
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S')
      ORDER BY c.relname`,
  );
  return { tables, relations: await listRelations(db, 'public'), sequences: await listSequences(db, 'public'), privileges: rows.map((row) => row.line) };
}

/** The tables whose id sequence would hand out an id at or below the table's highest id. */
export async function sequencesBehindMaxId(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ table: string; sequence: string }>(
    `SELECT t.relname::text AS table, s.relname::text AS sequence
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_class t ON t.oid = d.refobjid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid AND a.attname = 'id'
      WHERE n.nspname = 'public' AND d.deptype = 'a'`,
  );
  const behind: string[] = [];
  for (const { table, sequence } of rows) {
    // The next value without consuming one: last_value, plus one once it has been called.
    const { rows: [state] } = await db.query<{ next: string; max: string | null }>(
      `SELECT (SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM public.${quote(sequence)})::text AS next,
              (SELECT max(id) FROM public.${quote(table)})::text AS max`,
    );
    if (state!.max !== null && BigInt(state!.next) <= BigInt(state!.max)) behind.push(`${table}: next ${state!.next}, max(id) ${state!.max}`);
  }
  return behind.sort();
}

export interface LiveCheckpoint {
  name: string;
  position: number;
  state: string;
  fingerprint: string | null;
  error: string | null;
}

/** The live projections' checkpoints (not a rebuild's shadow ones), with their fingerprints. */
export async function liveCheckpoints(db: Queryable): Promise<LiveCheckpoint[]> {
  const { rows } = await db.query<LiveCheckpoint>(
    `SELECT name, position::float8 AS position, state, fingerprint, error FROM event_store.projections WHERE name NOT LIKE 'rebuild:%' ORDER BY name`,
  );
  return rows;
}

/** What an interrupted rebuild leaves behind: its schemas and its shadow checkpoints. */
export async function leftovers(db: Queryable): Promise<{ schemas: string[]; checkpoints: string[] }> {
  const { rows: schemas } = await db.query<{ name: string }>(`SELECT nspname::text AS name FROM pg_namespace WHERE nspname LIKE 'rebuild\\_%' ORDER BY 1`);
  const { rows: checkpoints } = await db.query<{ name: string }>(`SELECT name FROM event_store.projections WHERE name LIKE 'rebuild:%' ORDER BY 1`);
  return { schemas: schemas.map((row) => row.name), checkpoints: checkpoints.map((row) => row.name) };
}

/** Each table's oid: a table that was swapped gets a new one. */
export async function tableOids(db: Queryable, tables: string[]): Promise<Record<string, number>> {
  const { rows } = await db.query<{ table: string; oid: number }>(
    `SELECT c.relname::text AS table, c.oid::int AS oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname = ANY($1)`,
    [tables],
  );
  return Object.fromEntries(rows.map((row) => [row.table, row.oid]));
}

export async function headOf(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ head: number }>('SELECT coalesce(max(global_position), 0)::float8 AS head FROM event_store.events');
  return rows[0]!.head;
}

// ---------------------------------------------------------------------------------------------
// namespace_usage by hand

export interface NamespaceUsageRow {
  namespace_id: number;
  builds: number;
  completed_builds: number;
  total_size: number;
}

/**
 * What namespace_usage must hold after `envelopes`, worked out from the events themselves: per
 * namespace still there, the builds scheduled in its environments, how many completed, and the
 * sum of the sizes of the completed ones (BuildCompleted.size, later BuildSizeUpdated).
 */
export function expectedNamespaceUsage(envelopes: readonly Envelope[]): NamespaceUsageRow[] {
  const usage = new Map<number, NamespaceUsageRow>();
  const namespaceOfEnvironment = new Map<number, number>();
  const builds = new Map<number, { namespace: number; completed: boolean; size: number }>();
  for (const envelope of envelopes) {
    switch (envelope.type) {
      case 'NamespaceCreated':
        usage.set(envelope.data.namespace_id, { namespace_id: envelope.data.namespace_id, builds: 0, completed_builds: 0, total_size: 0 });
        break;
      case 'NamespacePurged':
        usage.delete(envelope.data.namespace_id);
        break;
      case 'EnvironmentCreated':
        namespaceOfEnvironment.set(envelope.data.environment_id, envelope.data.namespace_id);
        break;
      case 'BuildScheduled': {
        const namespace = namespaceOfEnvironment.get(envelope.data.environment_id)!;
        builds.set(envelope.data.build_id, { namespace, completed: false, size: 0 });
        const row = usage.get(namespace);
        if (row) row.builds++;
        break;
      }
      case 'BuildCompleted': {
        const build = builds.get(envelope.data.build_id)!;
        if (build.completed) break;
        build.completed = true;
        build.size = envelope.data.size ?? build.size;
        const row = usage.get(build.namespace);
        if (row) {
          row.completed_builds++;
          row.total_size += build.size;
        }
        break;
      }
      case 'BuildSizeUpdated': {
        const build = builds.get(envelope.data.build_id)!;
        const row = usage.get(build.namespace);
        if (row && build.completed) row.total_size += envelope.data.size - build.size;
        build.size = envelope.data.size;
        break;
      }
      case 'BuildPurged': {
        const build = builds.get(envelope.data.build_id)!;
        const row = usage.get(build.namespace);
        if (row && build.completed) row.total_size -= build.size;
        builds.delete(envelope.data.build_id);
        break;
      }
      default:
        break;
    }
  }
  return [...usage.values()].sort((a, b) => a.namespace_id - b.namespace_id);
}

export async function namespaceUsageRows(db: Queryable): Promise<NamespaceUsageRow[]> {
  const { rows } = await db.query<NamespaceUsageRow>(
    'SELECT namespace_id, builds, completed_builds, total_size::float8 AS total_size FROM public.namespace_usage ORDER BY namespace_id',
  );
  return rows;
}
