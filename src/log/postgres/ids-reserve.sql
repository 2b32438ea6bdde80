-- Moves the sequence of kind $1 past $2, an id of that kind the log holds (a restored log brings
-- its own ids): by nextval, not setval, so that ids allocateIds hands out meanwhile are never
-- handed out again (a setval could put the sequence back below one just taken). It takes as many
-- values as the sequence is behind: nothing in the normal case, once per restore otherwise.
SELECT count(nextval(('event_store.ids_' || $1)::regclass))::int AS skipped
FROM generate_series(1, greatest(0, $2::bigint - coalesce(pg_sequence_last_value(('event_store.ids_' || $1)::regclass), 0)))
