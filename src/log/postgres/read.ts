import type pg from 'pg';
import { ForeignTransactionIdError } from '../errors.js';
import type { ReadStreamOptions, RecordedEvent } from '../types.js';
import { inlineParameters, sqlFile, toNumber, withoutComments } from './sql.js';

const READ_FORWARD_SQL = sqlFile(import.meta.url, 'read-stream-forward.sql');
const READ_BACKWARD_SQL = sqlFile(import.meta.url, 'read-stream-backward.sql');
const READ_ALL_SQL = sqlFile(import.meta.url, 'read-all.sql');
const READ_ALL_OF_TYPES_SQL = sqlFile(import.meta.url, 'read-all-of-types.sql');
const HEAD_SQL = sqlFile(import.meta.url, 'head.sql');
const FOREIGN_TRANSACTION_ID_SQL = sqlFile(import.meta.url, 'foreign-transaction-id.sql');

interface EventRow {
  global_position: string;
  id: string;
  type: string;
  stream: string;
  stream_version: number;
  /** Epoch milliseconds: a number costs less to read than a timestamp's text. */
  recorded_ms: number;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

function toRecorded(row: EventRow): RecordedEvent {
  return {
    id: row.id,
    type: row.type,
    stream: row.stream,
    streamVersion: row.stream_version,
    globalPosition: toNumber(row.global_position),
    recordedAt: new Date(row.recorded_ms),
    data: row.data,
    metadata: row.metadata,
  };
}

const INT_MAX = 2 ** 31 - 1;

export async function readStream(pool: pg.Pool | pg.PoolClient, stream: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
  const backward = options.direction === 'backward';
  const from = options.fromVersion ?? (backward ? INT_MAX : 0);
  const limit = options.maxCount ?? INT_MAX;
  const { rows } = await pool.query<EventRow>({
    name: backward ? 'cse_read_stream_backward' : 'cse_read_stream_forward',
    text: backward ? READ_BACKWARD_SQL : READ_FORWARD_SQL,
    values: [stream, from, limit],
  });
  return rows.map(toRecorded);
}

const READ_ALL_INLINE = withoutComments(READ_ALL_SQL);
const READ_ALL_OF_TYPES_INLINE = withoutComments(READ_ALL_OF_TYPES_SQL);

/**
 * The bound (event_store.read_bound(): migrations/20260101000800_read_bound_function.ts) as a
 * transaction-local setting, which read-all.sql reads, and the head beside it.
 */
const SET_BOUND_SQL = `SELECT set_config('event_store.read_bound', r.bound, true) AS bound, r.head FROM event_store.read_bound() AS r`;

export interface GlobalBatch {
  events: RecordedEvent[];
  /** The last position committed when the bound was taken. */
  head: number;
  /** How far the read got: the last event's position, or beyond it past events of other types (`types`); `from - 1` when nothing was read. */
  position: number;
}

/**
 * One batch of the global log from `from` (inclusive), only as far as is safe to read: the bound
 * comes from one statement, the events from the next, whose snapshot is the later one. All go in
 * one simple query, one round trip: a simple query's statements run in one implicit transaction
 * (the bound lives as long as it), each with its own snapshot, for which the transaction is READ
 * COMMITTED whatever default_transaction_isolation says (one snapshot for both would skip events).
 * With `types`, only events of those types, and with them how far the read got (read-all-of-types.sql).
 */
export async function readBatch(pool: pg.Pool | pg.PoolClient, from: number, limit: number, types?: readonly string[]): Promise<GlobalBatch> {
  const read = types ? inlineParameters(READ_ALL_OF_TYPES_INLINE, [from, limit, [...types]]) : inlineParameters(READ_ALL_INLINE, [from, limit]);
  const statements = [
    'SET TRANSACTION ISOLATION LEVEL READ COMMITTED',
    // No parallel workers: a read is a short walk of the index, and a plan that starts workers for
    // it (seen on the filtered read as the log grew) pays more in starting them than it saves.
    'SET LOCAL max_parallel_workers_per_gather = 0',
    // The log in position order, filtered as it goes, stopping at the batch's last event. Left to
    // itself, the planner would rather read every later event and sort the few it keeps, as it
    // cannot know how few match (seen: 10 ms a read in bench/ingest, growing with the log).
    ...(types ? ['SET LOCAL enable_seqscan = off', 'SET LOCAL enable_bitmapscan = off'] : []),
    SET_BOUND_SQL,
    read,
  ];
  const results = (await pool.query(statements.join('; '))) as unknown as pg.QueryResult[];
  const resultOf = <R extends pg.QueryResultRow>(statement: string) => results[statements.indexOf(statement)] as pg.QueryResult<R>;
  const rows = resultOf<EventRow & { reached?: string }>(read).rows;
  const events = (types ? rows.filter((row) => row.global_position !== null) : rows).map(toRecorded);
  const last = events.length ? events[events.length - 1]!.globalPosition : from - 1;
  // A full batch stops at its last event; only a read that returned less went past it all.
  const past = types && events.length < limit ? toNumber(rows[0]!.reached!) : last;
  return { events, head: toNumber(resultOf<{ head: string }>(SET_BOUND_SQL).rows[0]!.head), position: Math.max(last, past) };
}

export async function headPosition(pool: pg.Pool | pg.PoolClient): Promise<number> {
  const { rows } = await pool.query<{ head: string }>({ name: 'cse_head', text: HEAD_SQL });
  return toNumber(rows[0]!.head);
}

/**
 * Throws ForeignTransactionIdError for the first event from `from` to `to` (exclusive) that another
 * server wrote (foreign-transaction-id.sql). One look at the primary key's range, stopping at the
 * first such event.
 */
export async function refuseForeignTransactionIds(pool: pg.Pool | pg.PoolClient, from: number, to: number): Promise<void> {
  const { rows } = await pool.query<{ position: string; transaction_id: string; next_transaction_id: string }>({
    name: 'cse_foreign_transaction_id',
    text: FOREIGN_TRANSACTION_ID_SQL,
    values: [from, to],
  });
  const [row] = rows;
  if (row) throw new ForeignTransactionIdError(toNumber(row.position), row.transaction_id, row.next_transaction_id);
}
