-- The messages of a batch that were rejected before, with the reason stored then: $1 the
-- JetStream stream, $2 and $3 the messages' sequences and stored-at times (the key of a row).
SELECT r.stream_sequence, r.reason
FROM unnest($2::bigint[], $3::timestamptz[]) AS m(stream_sequence, stored_at)
JOIN event_store.rejected_messages r
  ON r.nats_stream = $1 AND r.stream_sequence = m.stream_sequence AND r.stored_at = m.stored_at
