-- The first event from $1 (inclusive) to $2 (exclusive) whose transaction id this server has not
-- reached: at or above the snapshot's xmax, which no transaction of this server has had, so
-- another server wrote the row (the log was copied with pg_dump and pg_restore, or by logical
-- replication, which keep the column's values but not the server's transaction counter). Readers
-- take the transaction id for an appender still in flight: they would wait for it for ever, or,
-- once this server's own appends came after it, read those and pass it for good (subscribe.ts).
SELECT global_position::text AS position, transaction_id::text AS transaction_id, s.xmax::text AS next_transaction_id
FROM event_store.events
CROSS JOIN (SELECT pg_snapshot_xmax(pg_current_snapshot()) AS xmax) s
WHERE global_position >= $1 AND global_position < $2
  AND transaction_id >= s.xmax
ORDER BY global_position
LIMIT 1
