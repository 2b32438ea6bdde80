-- How far a read of some event types only got when it returned less than a batch: the last
-- position below the read bound, whatever its type (0 for none). Every event at or below it that
-- will ever be visible is visible now (event_store.read_bound()), so the reader may move past it.
SELECT coalesce(max(global_position), 0)::text AS reached
FROM event_store.events
WHERE global_position >= $1
  AND transaction_id < current_setting('event_store.read_bound')::xid8
