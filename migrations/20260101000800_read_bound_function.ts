import type { Knex } from 'knex';

/**
 * event_store.read_bound(): how far a global reader may go, and the head (src/log/postgres/read.ts
 * runs it before every read of the log). It used to be sent as SQL text in the read's simple query,
 * which PostgreSQL parses and plans every time: 0.3 of the 0.4 ms it took, half the cost of a read
 * that finds a few events, on every wake-up of every subscriber. A plpgsql function keeps its plan
 * for the session. Its one query takes its own snapshot when it starts (a volatile function, under
 * READ COMMITTED), as the statement did, so the bound means what it meant: see the comments.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(READ_BOUND_V1);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION event_store.read_bound');
}

/** The function's first version (replaced by 20260101001000). */
export const READ_BOUND_V1 = `
    CREATE FUNCTION event_store.read_bound() RETURNS TABLE (bound text, head text)
    LANGUAGE plpgsql VOLATILE AS $fn$
    #variable_conflict use_column
    BEGIN
      RETURN QUERY
      -- How far a global reader may go: below the oldest transaction id of an appender still in flight,
      -- and below every transaction id not assigned yet when this statement started (the snapshot's
      -- xmax). Appenders wear a badge (the shared advisory lock 7406/0, held to commit); every
      -- transaction holds an exclusive lock on its own id. One read of pg_locks sees both at once.
      -- Appenders that get their id after this statement started get one >= xmax, so the bound is
      -- safe; the next statement's snapshot sees every transaction below it finished.
      -- Only appenders of this database count, so a long-running write elsewhere on the server (a
      -- migration, another database's batch job) does not hold the log's readers back.
      WITH locks AS MATERIALIZED (
        SELECT locktype, database, classid, objid, objsubid, pid, mode, granted, transactionid FROM pg_locks
      ), snapshot AS (
        SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
      ), appenders AS (
        -- pg_locks shows 32-bit transaction ids. Every id in flight lies within 2^31 of xmax, so its
        -- 64-bit value is xmax plus the signed 32-bit distance between the two. The distance is
        -- positive for appenders that got their id after this statement's snapshot (they cannot lower
        -- the bound); taking it as a wrap into the previous epoch instead once made the bound negative,
        -- and the reader skipped events (test/log-postgres.test.ts, "reader bound ... after its snapshot").
        SELECT s.xmax + CASE WHEN d.diff >= 2147483648 THEN d.diff - 4294967296
                             WHEN d.diff < -2147483648 THEN d.diff + 4294967296
                             ELSE d.diff END AS xid
        FROM snapshot s
        JOIN locks l ON l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
        CROSS JOIN LATERAL (SELECT l.transactionid::text::bigint - (s.xmax & 4294967295) AS diff) d
        WHERE l.pid IN (SELECT b.pid FROM locks b
                        WHERE b.locktype = 'advisory' AND b.classid = 7406 AND b.objid = 0 AND b.objsubid = 2 AND b.granted
                          AND b.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
      )
      SELECT least(
        (SELECT xmax FROM snapshot),
        (SELECT min(xid) FROM appenders)
      )::text AS bound,
      -- The head as this statement sees it: when the events below the bound stop short of it, a
      -- committed event waits behind an appender in flight (the reader waits, it does not skip).
      (SELECT coalesce(max(global_position), 0) FROM event_store.events)::text AS head;
    END
    $fn$;
`;
