-- How far a global reader may go: below the oldest transaction id of an appender still in flight,
-- and below every transaction id not assigned yet when this statement started (the snapshot's
-- xmax). Appenders wear a badge (the shared advisory lock 7406/0, held to commit); every
-- transaction holds an exclusive lock on its own id. One read of pg_locks sees both at once.
-- Appenders that get their id after this statement started get one >= xmax, so the bound is
-- safe; the next statement's snapshot sees every transaction below it finished.
-- Only appenders count, so a long-running write elsewhere on the server (a migration, another
-- database's batch job) does not hold the log's readers back.
WITH locks AS MATERIALIZED (
  SELECT locktype, classid, objid, objsubid, pid, mode, granted, transactionid FROM pg_locks
), snapshot AS (
  SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax
), appenders AS (
  -- 32-bit transaction ids of appenders in flight, widened with the epoch of xmax.
  SELECT (s.xmax & ~4294967295::bigint) + l.transactionid::text::bigint AS xid, s.xmax
  FROM snapshot s
  JOIN locks l ON l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted
  WHERE l.pid IN (SELECT b.pid FROM locks b
                  WHERE b.locktype = 'advisory' AND b.classid = 7406 AND b.objid = 0 AND b.objsubid = 2 AND b.granted)
)
SELECT least(
  (SELECT xmax FROM snapshot),
  (SELECT min(CASE WHEN xid > xmax THEN xid - 4294967296 ELSE xid END) FROM appenders)
)::text AS bound
