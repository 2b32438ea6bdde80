-- read-all.sql for a reader that wants some event types only ($3): the others are passed over
-- here, their data never read out. read-reached.sql says how far the read got past them.
SELECT global_position, id, type, stream, stream_version, date_part('epoch', recorded_at) * 1000 AS recorded_ms, data, metadata
FROM event_store.events
WHERE global_position >= $1
  AND transaction_id < current_setting('event_store.read_bound')::xid8
  AND type = ANY($3::text[])
ORDER BY global_position
LIMIT $2
