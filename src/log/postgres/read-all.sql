-- Transaction ids and positions of appenders are allocated together (append_events step 5), so
-- every event not visible yet has a position above those of every transaction below the bound
-- (read-bound.sql): reading only those never skips an event that commits late.
SELECT global_position, id, type, stream, stream_version, recorded_at, data, metadata
FROM event_store.events
WHERE global_position >= $1
  AND transaction_id < $3::xid8
ORDER BY global_position
LIMIT $2
