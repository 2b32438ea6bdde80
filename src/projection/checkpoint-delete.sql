-- Checkpoint rows that are no longer needed (a rebuild's shadow checkpoints).
DELETE FROM event_store.projections WHERE name = ANY($1::text[])
