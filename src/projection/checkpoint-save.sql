-- The end of a batch, in one statement: the checkpoints move to the batch's last position, and each
-- id sequence ($3, $4: names and highest ids inserted) moves past the highest id, never back.
WITH sequences AS (
  SELECT setval(s.name::regclass, s.value)
  FROM unnest($3::text[], $4::bigint[]) AS s(name, value)
  WHERE s.value >= coalesce(pg_sequence_last_value(s.name::regclass), 0)
)
UPDATE event_store.projections SET position = $2, updated_at = now()
WHERE name = ANY($1::text[]) AND (SELECT count(*) FROM sequences) >= 0
