SELECT global_position, id, type, stream, stream_version, recorded_at, data, metadata
FROM event_store.events
WHERE stream = $1 AND stream_version >= $2
ORDER BY stream_version
LIMIT $3
