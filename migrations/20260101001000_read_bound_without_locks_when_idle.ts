import type { Knex } from 'knex';
import { edit } from './20260101000600_cheaper_key_claims.js';
import { READ_BOUND_V1 } from './20260101000800_read_bound_function.js';

/**
 * event_store.read_bound() reads pg_locks only when a transaction with an id below the snapshot's
 * xmax is in flight.
 *
 * Reading pg_locks takes every lock partition of the server and copies the whole lock table: 0.25
 * to 0.5 ms, the largest part of a projection batch's read under a steady trickle of events (one
 * read per batch). When the snapshot's xmin equals its xmax, no transaction with an id below xmax
 * is in progress (its own included), so no appender can lower the bound, and the bound is the
 * snapshot's xmax: what the full query gives then. (An appender that wears its badge but has no
 * transaction id yet gets one at or above xmax, as before.) Otherwise the lock table is read, to
 * tell appenders from other writers, as before.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.read_bound; ${READ_BOUND_V2}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.read_bound; ${READ_BOUND_V1}`);
}

const READ_BOUND_V2 = [
  [
    `), snapshot AS (
        SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
      ), appenders AS (`,
    `), snapshot AS (
        SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax,
               -- No transaction with an id below xmax in progress (the reader's own included): no
               -- appender can lower the bound.
               pg_snapshot_xmin(pg_current_snapshot()) = pg_snapshot_xmax(pg_current_snapshot()) AS idle
      ), appenders AS (`,
  ],
  [
    `      SELECT least(
        (SELECT xmax FROM snapshot),
        (SELECT min(xid) FROM appenders)
      )::text AS bound,`,
    `      -- When idle, the lock table is not read: CASE does not evaluate the subquery of a branch it
      -- does not take, and the locks CTE is only read by that subquery.
      SELECT CASE WHEN (SELECT idle FROM snapshot) THEN (SELECT xmax FROM snapshot)
                  ELSE least((SELECT xmax FROM snapshot), (SELECT min(xid) FROM appenders)) END::text AS bound,`,
  ],
].reduce((text, [from, to]) => edit(text, from!, to!), READ_BOUND_V1);
