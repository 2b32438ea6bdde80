SELECT global_position, id, type, stream, stream_version, date_part('epoch', recorded_at) * 1000 AS recorded_ms, data, metadata
FROM event_store.events
WHERE stream = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3
