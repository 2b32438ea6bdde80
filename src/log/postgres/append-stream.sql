-- The fast path of an append: one stream, no keys, no preconditions (most appends of a service).
-- One INSERT instead of a call of event_store.append_events(): its setup of twenty arrays cost
-- more than the write itself. Whenever this statement cannot decide alone, it inserts nothing and
-- the caller falls back to append_events(), which decides and explains (append.ts):
--   - the expected version does not hold as this statement's snapshot sees it, or the transaction
--     has written before (append_events() refuses that: CS007): no row comes back;
--   - an event id is in the log already (a retry, or a conflict), or another appender took the
--     stream version in between: the unique constraints raise 23505, after waiting for that
--     appender to commit or abort, so nothing is ever written twice or with a gap.
-- $1 stream, $2 expected version ('any' | 'no_stream' | 'stream_exists' | '<version>'),
-- $3 event ids, $4 types, $5 data (JSON array), $6 metadata (JSON array, null for none).
WITH version AS MATERIALIZED (
  -- no_stream needs no read: version 0 is either free or the INSERT's unique key says why not.
  SELECT CASE WHEN $2::text = 'no_stream' THEN -1
              ELSE (SELECT coalesce(max(e.stream_version), -1) FROM event_store.events e WHERE e.stream = $1::text)
         END AS current
), allowed AS MATERIALIZED (
  -- A version compares as text: a cast of $2 to int would be folded by the planner of a custom
  -- plan even in the branches that do not run.
  SELECT v.current FROM version v
  WHERE pg_current_xact_id_if_assigned() IS NULL
    AND CASE $2::text WHEN 'any' THEN true WHEN 'no_stream' THEN true
                          WHEN 'stream_exists' THEN v.current >= 0
                          ELSE v.current::text = $2::text END
), positions AS MATERIALIZED (
  -- The locks of append_events(), in its order: the stream (exclusive, so that a precondition of
  -- another append on this stream's version holds to its commit), the appender's badge (readers
  -- find appenders in flight through it) and, for a moment, the position lock under which the
  -- transaction id and the positions are taken together (position order = transaction-id order:
  -- see migrations/20260101000100_event_store.ts, step 5). A target list is evaluated left to
  -- right, and the inner one (volatile, so never pulled up) before the outer: lock, id, positions,
  -- unlock. The caller releases the position lock if the statement fails while holding it.
  SELECT x.current, x.tx, x.first,
         CASE WHEN cardinality($3::uuid[]) > 1
              THEN setval('event_store.global_position_seq', x.first + cardinality($3::uuid[]) - 1) END AS last,
         pg_advisory_unlock(7402, 0) AS unlocked
  FROM (SELECT a.current,
               pg_advisory_xact_lock(7401, hashtext($1::text)) AS stream_locked,
               pg_advisory_xact_lock_shared(7406, 0) AS badge,
               pg_advisory_lock(7402, 0) AS position_locked,
               pg_current_xact_id() AS tx,
               nextval('event_store.global_position_seq') AS first
        FROM allowed a
        OFFSET 0) x
)
INSERT INTO event_store.events AS ev
  (global_position, id, stream, stream_version, type, data, metadata, recorded_at, transaction_id)
SELECT p.first + e.o - 1, e.id, $1::text, p.current + e.o::int, e.type,
       $5::jsonb -> (e.o::int - 1),
       coalesce(nullif($6::jsonb -> (e.o::int - 1), 'null'::jsonb), '{}'::jsonb),
       now(), p.tx
FROM positions p
CROSS JOIN unnest($3::uuid[], $4::text[]) WITH ORDINALITY AS e(id, type, o)
RETURNING ev.id AS event_id, ev.global_position, ev.stream_version, ev.recorded_at, false AS duplicate
