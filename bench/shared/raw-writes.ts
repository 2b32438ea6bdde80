/**
 * bench/ingest's raw baseline writes: the same events in plain batched INSERTs, into a copy of
 * event_store.events without the log's function, locks or keys, and their rows into
 * constraint-free copies of the projection tables (rows from the same pure handlers). That is the
 * least work that stores what `serve` stores. The throughput baseline and the raw latency
 * pipeline (raw-pipeline.ts) write through the same writer, so both baselines do the same work.
 */
import type pg from 'pg';
import { condaStoreProjections } from '../../projections/index.js';
import type { Envelope } from '../../src/catalogue/index.js';
import { changesFor, type ProjectedEvent } from '../../src/projection/definition.js';

/** The projection tables a channel sync writes (bench/ingest's workload). */
const TABLES = ['conda_package', 'conda_package_build'];

/** (Re)creates raw_events, raw_events_only and the raw_<table> copies, empty. */
export async function createRawTables(pool: pg.Pool): Promise<void> {
  await pool.query(`
    DROP TABLE IF EXISTS raw_events, raw_events_only; DROP SEQUENCE IF EXISTS raw_events_position_seq;
    CREATE SEQUENCE raw_events_position_seq AS bigint MINVALUE 1;
    CREATE TABLE raw_events (LIKE event_store.events INCLUDING ALL);
    ALTER TABLE raw_events ALTER COLUMN global_position SET DEFAULT nextval('raw_events_position_seq'),
                           ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
    -- An identical table too (keys and indexes): without them the events-only figure measured
    -- less than the log's table costs to write.
    CREATE TABLE raw_events_only (LIKE raw_events INCLUDING ALL);
  `);
  for (const table of TABLES) await pool.query(`DROP TABLE IF EXISTS raw_${table}; CREATE TABLE raw_${table} (LIKE ${table})`);
}

export interface RawWriter {
  /** One transaction: the events into raw_events_only. */
  eventsOnly(batch: Envelope[]): Promise<void>;
  /** One transaction: the events into raw_events and their rows into the raw_<table> copies. */
  withRows(batch: Envelope[]): Promise<void>;
}

/** Writes on `client` (one connection, as the ingester appends on one at a time). */
export function rawWriter(client: pg.ClientBase): RawWriter {
  // Each stream's next version, per table: the unique key on (stream, stream_version) is one of
  // the copied indexes, and a stream's events may come in different batches.
  const versions = new Map<string, Map<string, number>>();
  const insertEvents = (batch: Envelope[], table: string) => {
    let next = versions.get(table);
    if (!next) versions.set(table, (next = new Map()));
    const streamVersions = batch.map((e) => {
      const version = next.get(e.stream) ?? 0;
      next.set(e.stream, version + 1);
      return version;
    });
    return client.query(
      `INSERT INTO ${table} (id, stream, stream_version, type, data, metadata)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::jsonb[], $6::jsonb[])`,
      [batch.map((e) => e.id), batch.map((e) => e.stream), streamVersions, batch.map((e) => e.type), batch.map((e) => JSON.stringify(e.data)), batch.map((e) => JSON.stringify(e.metadata ?? {}))],
    );
  };
  const inTransaction = async (work: () => Promise<void>) => {
    await client.query('BEGIN');
    await work();
    await client.query('COMMIT');
  };
  return {
    eventsOnly: (batch) => inTransaction(async () => void (await insertEvents(batch, 'raw_events_only'))),
    withRows: (batch) =>
      inTransaction(async () => {
        const rows = new Map<string, Record<string, unknown>[]>();
        for (const event of batch) {
          for (const projection of condaStoreProjections) {
            for (const change of changesFor(projection, { ...event, streamVersion: 0, globalPosition: 0, metadata: {} } as unknown as ProjectedEvent)) {
              if (change.op !== 'insert') continue;
              const list = rows.get(change.table);
              if (list) list.push(change.row);
              else rows.set(change.table, [change.row]);
            }
          }
        }
        await insertEvents(batch, 'raw_events');
        for (const [table, list] of rows) {
          const columns = Object.keys(list[0]!).map((c) => `"${c}"`).join(', ');
          await client.query(`INSERT INTO raw_${table} (${columns}) SELECT ${columns} FROM json_populate_recordset(NULL::raw_${table}, $1::json)`, [JSON.stringify(list)]);
        }
      }),
  };
}
