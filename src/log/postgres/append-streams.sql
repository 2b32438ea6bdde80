-- Several single-stream appends that were waiting at once, in one statement and one commit (the
-- append queue of append-queue.ts): the fast path of append-stream.sql for several streams, each
-- request atomic with the others. Like that statement, whenever it cannot decide alone it inserts
-- nothing and the caller runs each request on its own, which decides and explains:
--   - an expected version does not hold as this statement's snapshot sees it, or the transaction
--     has written before: no row comes back;
--   - an event id is in the log already, or another appender took a stream version in between:
--     the unique constraints raise 23505 (after waiting for that appender), nothing is written.
-- The queue never puts one stream twice in a statement: each request's versions follow its own
-- stream's current version.
-- Returns a row per request (below), none when it wrote nothing.
-- $1 streams, $2 expected versions (as text), $3 the number of events of each request, in order;
-- $4 the requests' events' ids and $5 their types, request after request; $6 data and $7 metadata
-- as one JSON array each (metadata null: none); $8 and $9 the channel and payload of a
-- notification to send, or nulls.
WITH requests AS MATERIALIZED (
  SELECT r.o, r.stream, r.expected, r.n,
         -- Events of the requests before this one: its events are o = before + 1 ... before + n.
         sum(r.n) OVER (ORDER BY r.o) - r.n AS before,
         -- no_stream needs no read: version 0 is either free or the INSERT's unique key says why not.
         CASE WHEN r.expected = 'no_stream' THEN -1
              ELSE (SELECT coalesce(max(s.stream_version), -1) FROM event_store.events s WHERE s.stream = r.stream)
         END AS current
  FROM unnest($1::text[], $2::text[], $3::int[]) WITH ORDINALITY AS r(stream, expected, n, o)
),
checked AS MATERIALIZED (
  SELECT bool_and(CASE q.expected WHEN 'any' THEN true WHEN 'no_stream' THEN true
                                  WHEN 'stream_exists' THEN q.current >= 0
                                  ELSE q.current::text = q.expected END) AS ok
  FROM requests q
),
stream_locks AS MATERIALIZED (
  -- Every stream, in the one global order of append_events() (by key), so that appenders never
  -- deadlock: held to commit, for the preconditions of other appends (see append-stream.sql).
  SELECT count(pg_advisory_xact_lock(7401, l.k)) AS locked
  FROM (SELECT DISTINCT hashtext(q.stream) AS k FROM requests q ORDER BY 1 OFFSET 0) l
),
positions AS MATERIALIZED (
  -- The badge and the position lock of append-stream.sql, in the same order, after the stream
  -- locks (a join evaluates its target list once both sides have a row); the positions of all the
  -- events at once, in request order.
  SELECT pg_advisory_xact_lock_shared(7406, 0) AS badge,
         pg_advisory_lock(7402, 0) AS position_locked,
         pg_current_xact_id() AS tx,
         nextval('event_store.global_position_seq') AS first,
         setval('event_store.global_position_seq', currval('event_store.global_position_seq') + cardinality($4::uuid[]) - 1) AS last,
         pg_advisory_unlock(7402, 0) AS position_unlocked,
         CASE WHEN $9::text IS NOT NULL THEN pg_notify($8::text, $9::text) END AS notified
  FROM checked c
  CROSS JOIN stream_locks
  WHERE c.ok AND pg_current_xact_id_if_assigned() IS NULL
),
inserted AS (
  INSERT INTO event_store.events AS ev
    (global_position, id, stream, stream_version, type, data, metadata, recorded_at, transaction_id)
  SELECT x.first + e.o - 1, e.id, q.stream, q.current + (e.o - q.before), e.type,
         $6::jsonb -> (e.o::int - 1), coalesce(nullif($7::jsonb -> (e.o::int - 1), 'null'::jsonb), '{}'::jsonb), now(), x.tx
  FROM positions x
  CROSS JOIN unnest($4::uuid[], $5::text[]) WITH ORDINALITY AS e(id, type, o)
  JOIN requests q ON e.o > q.before AND e.o <= q.before + q.n
)
-- One row per request, in request order, not one per event: the INSERT's position and version of
-- its first event (e.o = q.before + 1 above; the others follow on, positions across the requests
-- in order, versions within each), and the time every event of the transaction is recorded at
-- (now(), the transaction's start). Returning every event's row cost 1.5 to 3 % of a 100-event
-- append (scratch runs, interleaved). No row reaches the client before the INSERT is done: a
-- statement with a data-modifying WITH runs to completion before it sends any (and the sort needs
-- all its input); if the INSERT raises, the client gets the error alone.
SELECT x.first + q.before AS global_position, q.current + 1 AS stream_version, date_part('epoch', now()) * 1000 AS recorded_ms
FROM positions x
CROSS JOIN requests q
ORDER BY q.o
