-- Moves the sequence of kind $1 past $2, an id of that kind the log holds (a restored log brings
-- its own ids), in one setval whatever the distance. Under the kind's allocation lock, exclusive
-- (ids.sql takes it shared; the one-time filter takes it before anything else runs): no allocator
-- takes an id between the read of the sequence and the setval, which could otherwise put the
-- sequence back below an id just handed out. Never lowers it (greatest).
SELECT setval(k.seq, greatest(coalesce(pg_sequence_last_value(k.seq), 0), $2::bigint)) AS reserved
FROM (SELECT ('event_store.ids_' || $1)::regclass AS seq) k
WHERE (SELECT pg_advisory_xact_lock(7408, hashtext($1))::text) = ''
