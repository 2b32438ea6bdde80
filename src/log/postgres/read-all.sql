-- Transaction ids and positions are allocated together (append_events step 6), so every event
-- that is not visible yet, or belongs to a transaction still in flight, has a position above
-- those of transactions older than the snapshot's xmin: reading only those never skips one.
SELECT global_position, id, type, stream, stream_version, recorded_at, data, metadata
FROM event_store.events
WHERE global_position >= $1
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY global_position
LIMIT $2
