-- Transaction ids and positions of appenders are allocated together (append_events step 5), so
-- every event not visible yet has a position above those of every transaction below the bound
-- (event_store.read_bound()): reading only those never skips an event that commits late. The
-- bound is the setting event_store.read_bound, set by the statement before this one (same round
-- trip, earlier snapshot: see readBatch in read.ts).
SELECT global_position, id, type, stream, stream_version, date_part('epoch', recorded_at) * 1000 AS recorded_ms, data, metadata
FROM event_store.events
WHERE global_position >= $1
  AND transaction_id < current_setting('event_store.read_bound')::xid8
ORDER BY global_position
LIMIT $2
