-- A batch's rejected messages, in one statement whatever their number: one array per column (a
-- VALUES list took ten parameters a row, and past 6,553 rows the protocol's count of 65,535
-- parameters wrapped: the server refused the statement, and the batch came back for ever).
-- A redelivered message lands on its existing row: the key is its JetStream stream, sequence and
-- stored-at time.
-- $11 and $12: the fence the ingester holds and its epoch (consumer.ts), or nulls: the rows go in only
-- while no other ingester has taken over (migrations/20260101001800_writer_fences.ts).
WITH fenced AS MATERIALIZED (
  SELECT CASE WHEN $11::text IS NOT NULL THEN event_store.hold_fence($11::text, $12::bigint) END
)
INSERT INTO event_store.rejected_messages
  (subject, headers, body, body_text, reason, nats_stream, stream_sequence, stored_at, event_id, event_type)
SELECT r.*
FROM fenced
CROSS JOIN unnest($1::text[], $2::jsonb[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::timestamptz[], $9::text[], $10::text[]) AS r
ON CONFLICT (nats_stream, stream_sequence, stored_at) DO NOTHING
