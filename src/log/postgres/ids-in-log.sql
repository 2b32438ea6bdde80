-- which of $1 (event ids) are in the log, in the order given: after an append
-- refused for mixing events already in the log with new ones (CS003), to name them.
SELECT x.id::text
FROM unnest($1::uuid[]) WITH ORDINALITY AS x(id, o)
WHERE EXISTS (SELECT 1 FROM event_store.events e WHERE e.id = x.id)
ORDER BY x.o
