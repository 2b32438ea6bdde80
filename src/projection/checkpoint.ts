import type pg from 'pg';
import { leanPipeline, stepOf, type PipelineStep } from '../db/lean-query.js';
import { arrayParameter, inlineParameters, sqlFile, textParameter, toNumber, withoutComments } from '../log/postgres/sql.js';

/**
 * The name prefix of a rebuild's shadow checkpoints (`rebuild:<projection>`, rebuild.ts): rows of
 * this table that are no live projection's (status lists them apart).
 */
export const SHADOW_PREFIX = 'rebuild:';

const ENSURE = sqlFile(import.meta.url, 'checkpoint-ensure.sql');
const LOCK = sqlFile(import.meta.url, 'checkpoint-lock.sql');
const EXPECT = sqlFile(import.meta.url, 'checkpoint-expect.sql');
const SAVE = sqlFile(import.meta.url, 'checkpoint-save.sql');
const FAIL = sqlFile(import.meta.url, 'checkpoint-fail.sql');
const RESUME = sqlFile(import.meta.url, 'checkpoint-resume.sql');
const STATUS = sqlFile(import.meta.url, 'checkpoint-status.sql');
const DELETE = sqlFile(import.meta.url, 'checkpoint-delete.sql');

type Queryable = pg.Pool | pg.ClientBase;

export interface CheckpointRow {
  name: string;
  position: number;
  state: 'running' | 'failed';
  /** What the projection's tables were built by (fingerprint.ts: `v<version>:<digest>`); null before the first build records it. */
  fingerprint: string | null;
}

export interface ProjectionStatus extends CheckpointRow {
  error: string | null;
  errorPosition: number | null;
  errorEventId: string | null;
  errorEventType: string | null;
  updatedAt: Date;
}

export async function ensureCheckpoints(db: Queryable, names: string[]): Promise<void> {
  await db.query(ENSURE, [names]);
}

export async function deleteCheckpoints(db: Queryable, names: string[]): Promise<void> {
  await db.query(DELETE, [names]);
}

export async function resumeFailed(db: Queryable, names: string[]): Promise<void> {
  await db.query(RESUME, [names]);
}

/** Locks the checkpoint rows for the rest of the transaction and returns them. */
export async function lockCheckpoints(client: pg.ClientBase, names: string[]): Promise<Map<string, CheckpointRow>> {
  const { rows } = await client.query<LockRow>(LOCK, [names]);
  return toCheckpoints(rows);
}

type LockRow = { name: string; position: string; state: 'running' | 'failed'; fingerprint: string | null };
const toCheckpoints = (rows: LockRow[]) =>
  new Map(rows.map((row) => [row.name, { name: row.name, position: toNumber(row.position), state: row.state, fingerprint: row.fingerprint }]));

/**
 * Opens a transaction with `begin` (BEGIN and its SETs, statements without parameters) and locks
 * the checkpoint rows, in one round trip (a batch of a live projection is a few round trips in
 * all, so each one counts).
 */
export async function beginAndLock(client: pg.ClientBase, begin: readonly string[], names: string[]): Promise<Map<string, CheckpointRow>> {
  const results = (await client.query(`${begin.join('; ')}; ${inlineParameters(withoutComments(LOCK), [names])}`)) as unknown as pg.QueryResult<LockRow>[];
  return toCheckpoints(results[results.length - 1]!.rows);
}

/** A statement of a batch: SQL with `$n` parameters and their values (see Statement in statements.ts). */
type BatchStatement = { text: string; values: unknown[] };

/**
 * The steps that end a batch: `statements`, the save of the checkpoints `names` at `position` and
 * of each id sequence past its highest id inserted (`sequences`: name → id), and COMMIT, as
 * prepared statements (src/db/lean-query.ts).
 */
function endSteps(names: string[], position: number, sequences: Map<string, number>, statements: readonly BatchStatement[]): PipelineStep[] {
  const steps = statements.map((statement) => stepOf(statement.text, statement.values.map(textParameter)));
  if (names.length || sequences.size) {
    steps.push(stepOf(SAVE, [arrayParameter(names), String(position), arrayParameter([...sequences.keys()]), arrayParameter([...sequences.values()])]));
  }
  steps.push(stepOf('COMMIT', []));
  return steps;
}

/**
 * Runs the end of a batch (endSteps) in one round trip. Should a statement fail, PostgreSQL runs
 * nothing after it: no COMMIT.
 */
export async function saveAndCommit(client: pg.ClientBase, names: string[], position: number, sequences: Map<string, number>, statements: readonly BatchStatement[] = []): Promise<void> {
  await leanPipeline(client, endSteps(names, position, sequences, statements));
}

/** The error of expect_checkpoints(): the checkpoints are not as the caller last saw them. */
export const CHECKPOINTS_MOVED = 'CS101';

/**
 * A whole batch in one round trip: `begin`, the guard that locks the checkpoint rows and raises
 * CHECKPOINTS_MOVED unless they are `expected`, then the end of the batch (endSteps). As
 * prepared statements (src/db/lean-query.ts): a live batch of a few events was parsed and
 * planned anew every time as one simple query, which was most of its time in PostgreSQL (0.63 ms
 * against 0.24 ms prepared, for three package builds). The caller rolls back after an error.
 */
export async function guardedBatch(
  client: pg.ClientBase,
  begin: readonly string[],
  expected: Map<string, CheckpointRow>,
  names: string[],
  position: number,
  sequences: Map<string, number>,
  statements: readonly BatchStatement[],
): Promise<void> {
  const rows = [...expected.values()];
  await leanPipeline(client, [
    ...begin.map((text) => stepOf(text, [])),
    stepOf(EXPECT, [
      arrayParameter(rows.map((c) => c.name)),
      arrayParameter(rows.map((c) => c.position)),
      arrayParameter(rows.map((c) => c.state)),
      arrayParameter(rows.map((c) => c.fingerprint)),
    ]),
    ...endSteps(names, position, sequences, statements),
  ]);
}

export async function markFailed(
  db: Queryable,
  name: string,
  event: { globalPosition: number; id: string; type: string },
  error: string,
): Promise<void> {
  await db.query(FAIL, [name, error, event.globalPosition, event.id, event.type]);
}

export async function readStatuses(db: Queryable): Promise<ProjectionStatus[]> {
  const { rows } = await db.query(STATUS);
  return rows.map((row) => ({
    name: row.name,
    position: toNumber(row.position),
    state: row.state,
    fingerprint: row.fingerprint,
    error: row.error,
    errorPosition: row.error_position === null ? null : toNumber(row.error_position),
    errorEventId: row.error_event_id,
    errorEventType: row.error_event_type,
    updatedAt: row.updated_at,
  }));
}
