/**
 * Projection tests against PostgreSQL: a fresh database of the test's own, a history appended
 * through the append-time rules (`appendEnvelopes`), the projection service run over it, and the
 * resulting tables read back in a form that compares well (`t.deepEqual`) or digested (md5).
 */
import type { ExecutionContext } from 'ava';
import pg from 'pg';
import type { Envelope, Upcast } from '../../src/catalogue/index.js';
import { appendEnvelopes } from '../../src/decide/append-batch.js';
import { createPostgresEventLog } from '../../src/log/postgres/index.js';
import type { AppendedEvent, EventLog } from '../../src/log/types.js';
import { createLogger } from '../../src/logger.js';
import type { ProjectionDefinition } from '../../src/projection/definition.js';
import { createProjectionService } from '../../src/projection/service.js';
import { condaStoreProjections } from '../../projections/index.js';
import { freshDatabase, testPool, withClient } from './database.js';
import { quoteIdent as quote } from '../../src/log/postgres/sql.js';

export const silentLogger = createLogger('silent');

/** conda-store's 16 tables and their primary keys (the order rows are read in). */
export const TABLE_KEYS = {
  namespace: ['id'],
  namespace_role_mapping: ['id'],
  namespace_role_mapping_v2: ['id'],
  specification: ['id'],
  environment: ['id'],
  build: ['id'],
  build_artifact: ['id'],
  build_conda_package_build: ['build_id', 'conda_package_build_id'],
  solve: ['id'],
  solve_conda_package_build: ['solve_id', 'conda_package_build_id'],
  conda_channel: ['id'],
  conda_package: ['id'],
  conda_package_build: ['id'],
  conda_store_configuration: ['id'],
  keyvaluestore: ['id'],
  worker: ['id'],
} as const satisfies Record<string, readonly string[]>;

export type TableName = keyof typeof TABLE_KEYS;
export const TABLES = Object.keys(TABLE_KEYS) as TableName[];
/** The tables with a serial `id` (all but the two association tables). */
export const ID_TABLES = TABLES.filter((table) => TABLE_KEYS[table][0] === 'id' && TABLE_KEYS[table].length === 1);

type Queryable = pg.Pool | pg.Client | pg.PoolClient;

const orderBy = (table: TableName) => TABLE_KEYS[table].map((column) => `t.${quote(column)}`).join(', ');

/** Runs `fn` with a database: a pool or client as given, or a short-lived client for a URL. */
function withDb<T>(db: string | Queryable, fn: (db: Queryable) => Promise<T>): Promise<T> {
  return typeof db === 'string' ? withClient(db, fn) : fn(db);
}

export type TableRow = Record<string, unknown>;

/**
 * The rows of a table ordered by primary key, each as PostgreSQL's `to_json` writes it: every
 * column, in table order; timestamps (without time zone) as ISO-8601 strings without a zone,
 * `2024-03-02T10:00:00.123456` (no Date, so no local-time conversion); bigints as numbers;
 * json columns as their values. SQL NULL and a JSON `null` both read as null: check `IS NULL`
 * where the difference matters.
 */
export async function tableRows(db: string | Queryable, table: TableName): Promise<TableRow[]> {
  return withDb(db, async (q) => {
    const { rows } = await q.query<{ row: TableRow }>(`SELECT to_json(t) AS row FROM public.${quote(table)} t ORDER BY ${orderBy(table)}`);
    return rows.map((row) => row.row);
  });
}

/** Every table's rows. */
export async function allTableRows(db: string | Queryable): Promise<Record<TableName, TableRow[]>> {
  return withDb(db, async (q) => {
    const result = {} as Record<TableName, TableRow[]>;
    for (const table of TABLES) result[table] = await tableRows(q, table);
    return result;
  });
}

/**
 * A digest per table: md5 of every row's text in primary-key order, plus the state of the table's
 * id sequence (the ids the projection has moved it past). Two databases with equal digests have
 * the same rows, the same ids and the same sequences.
 */
export async function tableDigests(db: string | Queryable): Promise<Record<TableName, string>> {
  return withDb(db, async (q) => {
    const result = {} as Record<TableName, string>;
    for (const table of TABLES) {
      const { rows } = await q.query<{ digest: string; count: number }>(
        `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY ${orderBy(table)}), '')) AS digest, count(*)::int AS count FROM public.${quote(table)} t`,
      );
      let sequence = '';
      if (ID_TABLES.includes(table)) {
        const { rows: seq } = await q.query<{ name: string }>(`SELECT pg_get_serial_sequence($1, 'id') AS name`, [`public.${table}`]);
        const { rows: state } = await q.query<{ last_value: string; is_called: boolean }>(`SELECT last_value::text, is_called FROM ${seq[0]!.name}`);
        sequence = ` seq ${state[0]!.last_value}/${state[0]!.is_called}`;
      }
      result[table] = `${rows[0]!.count} rows ${rows[0]!.digest}${sequence}`;
    }
    return result;
  });
}

export interface CheckpointState {
  name: string;
  position: number;
  state: string;
  error: string | null;
  error_position: number | null;
  error_event_id: string | null;
  error_event_type: string | null;
}

/** The rows of event_store.projections, by name. */
export async function checkpointRows(db: string | Queryable): Promise<Record<string, CheckpointState>> {
  return withDb(db, async (q) => {
    const { rows } = await q.query<CheckpointState>(
      `SELECT name, position::float8 AS position, state, error, error_position::float8 AS error_position,
              error_event_id::text AS error_event_id, error_event_type
         FROM event_store.projections ORDER BY name`,
    );
    return Object.fromEntries(rows.map((row) => [row.name, row]));
  });
}

export interface TestLog {
  url: string;
  log: EventLog;
  /** Runs a query on the test database (a pool closed at teardown). */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, values?: unknown[]): Promise<R[]>;
}

/** A migrated database of the test's own, with a PostgreSQL event log and a query pool, closed at teardown. */
export async function testLog(t: ExecutionContext): Promise<TestLog> {
  const db = await freshDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  // Registered after freshDatabase's drop: ava runs teardowns last-in first-out, so these go first.
  const pool = testPool(t, db.url, 2);
  t.teardown(() => log.close());
  return {
    url: db.url,
    log,
    async query(sql, values) {
      const { rows } = await pool.query(sql, values);
      return rows;
    },
  };
}

export interface CatchUpOptions {
  projections?: ProjectionDefinition[];
  batchSize?: number;
  /** Statements of at least this many rows have their foreign keys checked set-based (Infinity: never). */
  setBasedKeyChecksFrom?: number;
  /** How events are upcast (default: the catalogue's upcasters). */
  upcast?: Upcast;
}

/** Runs the projection service's catch-up once (its own pool, closed afterwards). */
export async function catchUp(url: string, log: EventLog, options: CatchUpOptions = {}): Promise<void> {
  const service = createProjectionService({
    databaseUrl: url,
    log,
    logger: silentLogger,
    projections: options.projections ?? condaStoreProjections,
    batchSize: options.batchSize,
    setBasedKeyChecksFrom: options.setBasedKeyChecksFrom,
    upcast: options.upcast,
  });
  try {
    await service.catchUp();
  } finally {
    await service.close();
  }
}

export interface ProjectedHistory extends TestLog {
  /** What appendEnvelopes returned, one per envelope, in order. */
  appended: AppendedEvent[];
}

/**
 * A fresh database with `envelopes` appended through the append-time rules and projected by the
 * projection service's catch-up.
 */
export async function projectHistory(t: ExecutionContext, envelopes: Envelope[], options: CatchUpOptions = {}): Promise<ProjectedHistory> {
  const db = await testLog(t);
  const appended = await appendEnvelopes(db.log, envelopes);
  await catchUp(db.url, db.log, options);
  return { ...db, appended };
}

/**
 * Holds one of a few slots for the rest of the test (released at teardown, after the test's
 * database is dropped): each test here opens several connections (log, service, queries), and a
 * file of tests all running at once would exhaust the server's max_connections.
 */
export function slots(size: number): (t: ExecutionContext) => Promise<void> {
  let free = size;
  const waiting: Array<() => void> = [];
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else free++;
  };
  return async (t) => {
    if (free > 0) free--;
    else await new Promise<void>((resolve) => waiting.push(resolve));
    t.teardown(release);
  };
}

/** Waits until `condition` holds, checking every `intervalMs`; fails with `what` after `timeoutMs`. */
export async function waitUntil(
  condition: () => Promise<boolean> | boolean,
  what: string,
  { timeoutMs = 30_000, intervalMs = 25 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
