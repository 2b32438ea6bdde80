-- read-all.sql for a reader that wants some event types only ($3): the others are passed over
-- here, their data never read out. The first column, reached, says how far the read got past
-- them: the last position below the read bound, whatever its type (0 for none). Every event at or
-- below it that will ever be visible is visible now (event_store.read_bound()), so the reader may
-- move past it. It is taken by the statement that reads the events, with the same snapshot: taken
-- by a later statement, it could count an event that committed in between (from an appender
-- whose transaction id the bound missed, in the moment between the id's assignment and its lock)
-- that the read did not see, and the reader would pass over it. With no event of the types, one
-- row comes back, its event columns null.
SELECT r.reached, e.*
FROM (
  SELECT coalesce(max(global_position), 0)::text AS reached
  FROM event_store.events
  WHERE global_position >= $1
    AND transaction_id < current_setting('event_store.read_bound')::xid8
) r
LEFT JOIN LATERAL (
  SELECT global_position, id, type, stream, stream_version, date_part('epoch', recorded_at) * 1000 AS recorded_ms, data, metadata
  FROM event_store.events
  WHERE global_position >= $1
    AND transaction_id < current_setting('event_store.read_bound')::xid8
    AND type = ANY($3::text[])
  ORDER BY global_position
  LIMIT $2
) e ON true
