-- The end of a batch, in one statement: the checkpoints $1 move to the batch's last position $2,
-- and each id sequence ($3, $4: names and highest ids inserted) moves past the highest id, never
-- back. The UPDATE runs because it modifies data; the SELECT in WITH runs because the final
-- SELECT reads it (PostgreSQL skips a plain WITH query nobody reads).
WITH sequences AS (
  SELECT setval(s.name::regclass, s.value)
  FROM unnest($3::text[], $4::bigint[]) AS s(name, value)
  WHERE s.value >= coalesce(pg_sequence_last_value(s.name::regclass), 0)
), saved AS (
  UPDATE event_store.projections SET position = $2, updated_at = now()
  WHERE name = ANY($1::text[])
  RETURNING 1
)
SELECT (SELECT count(*) FROM sequences) AS sequences, (SELECT count(*) FROM saved) AS checkpoints
