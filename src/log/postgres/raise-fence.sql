-- Raises fence $1 and returns its new epoch; waits for the appends in flight that hold it
-- (migrations/20260101001800_writer_fences.ts).
SELECT event_store.raise_fence($1::text) AS epoch
