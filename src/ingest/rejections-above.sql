-- The sequences above $2 of the messages of stream $1 whose rejection is stored, the stream
-- created at $3 (created again, it numbers from 1 again: rows stored before are another stream's
-- messages). Read when a session starts: a message stored as rejected by an owner that died
-- before its ack comes back as redelivered, and its stored verdict is looked up then; but a
-- consumer deleted and created since delivers it anew, not marked as redelivered.
SELECT stream_sequence
FROM event_store.rejected_messages
WHERE nats_stream = $1 AND stream_sequence > $2 AND stored_at >= $3::timestamptz - interval '1 millisecond' -- $3 in nanoseconds, rounded here (perhaps up) to microseconds
