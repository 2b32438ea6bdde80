-- $2 ids of kind $1. Under the kind's allocation lock, shared (allocators do not wait for each
-- other), which ids-reserve.sql takes exclusively: the uncorrelated subquery is an InitPlan, a
-- one-time filter evaluated before the first row, so the lock is held before any nextval.
SELECT nextval(('event_store.ids_' || $1)::regclass)::int AS id
FROM generate_series(1, $2)
WHERE (SELECT pg_advisory_xact_lock_shared(7408, hashtext($1))::text) = ''
