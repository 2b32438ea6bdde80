-- Data and metadata travel as one JSON array each ($5, $6), turned into the function's jsonb[]
-- here: one JSON.stringify in the client instead of one per event plus node-postgres escaping
-- every quote of every element into an array literal (the largest cost of building a batch).
-- A metadata element that is JSON null means none.
-- $22 and $23: the channel and payload of a notification to send with the append (wakeups.ts), or
-- nulls. The CTE runs once; append_events() returns a row for every event, so the join runs it.
-- recorded_at goes as epoch milliseconds, which cost less to read than a timestamp: the expression of
-- append-stream.sql and of the reads, so that an event's recordedAt is the same whichever gave it.
WITH notified AS MATERIALIZED (
  SELECT CASE WHEN $23::text IS NOT NULL THEN pg_notify($22::text, $23::text) END
)
SELECT a.event_id, a.global_position, a.stream_version, date_part('epoch', a.recorded_at) * 1000 AS recorded_ms, a.duplicate
FROM event_store.append_events(
  $1::uuid[], $2::int[], $3::text[], $4::text[],
  ARRAY(SELECT x.e FROM jsonb_array_elements($5::jsonb) WITH ORDINALITY AS x(e, o) ORDER BY x.o),
  ARRAY(SELECT nullif(x.e, 'null'::jsonb) FROM jsonb_array_elements($6::jsonb) WITH ORDINALITY AS x(e, o) ORDER BY x.o),
  $7::text[], $8::text[],
  $9::int[], $10::text[], $11::text[], $12::text[], $13::text[],
  $14::int[], $15::text[], $16::text[],
  $17::int[], $18::text[], $19::text[], $20::text[], $21::text[]
) AS a
CROSS JOIN notified
