-- (A fenced append sends the fence's check after this statement, in its transaction: hold-fence.sql.)
-- The fast path of the commonest append: one event to one stream, no keys, no preconditions (an
-- append of several events, or of several streams at once, takes append-streams.sql). One INSERT
-- instead of a call of event_store.append_events(), whose setup of twenty arrays cost more than
-- the write itself, and with text parameters only, so that it is sent without a Describe
-- (src/db/lean-query.ts). Whenever this statement cannot decide alone, it inserts nothing and the
-- caller falls back to append_events(), which decides and explains (append.ts):
--   - the expected version does not hold as this statement's snapshot sees it, or the transaction
--     has written before (append_events() refuses that: CS007): no row comes back;
--   - the event id is in the log already (a retry, or a conflict), or another appender took the
--     stream version in between: the unique constraints raise 23505, after waiting for that
--     appender to commit or abort, so nothing is ever written twice or with a gap.
-- For a new stream (no_stream) the caller sends this statement without the version lookup, marked
-- below (append.ts): whether a branch of a CASE runs or not, the executor sets up its plan at every
-- execution, and that cost a sequential appender about 2 % of its rate. For a stream this process
-- has seen at the expected version (stream-versions.ts) the lookup is replaced by $9, that
-- version: the stream is there or beyond, and beyond (another process appended since), the unique
-- key on the next version raises as above, once the statement has taken its locks and a position,
-- which is left unused (as an aborted append leaves one).
-- $1 stream, $2 expected version ('any' | 'no_stream' | 'stream_exists' | '<version>'), $3 the
-- event's id, $4 its type, $5 its data, $6 its metadata (null: none); $7 and $8 the channel and
-- payload of a notification to send, or nulls.
INSERT INTO event_store.events AS ev
  (global_position, id, stream, stream_version, type, data, metadata, recorded_at, transaction_id)
SELECT x.position, $3::uuid, $1::text, x.current + 1, $4::text, $5::jsonb,
       coalesce($6::jsonb, '{}'::jsonb), now(), x.tx
FROM (
  -- The locks of append_events(), in its order: the stream (exclusive: not for this statement,
  -- whose version check runs before it and relies on the unique keys, but so that another
  -- append's precondition on this stream's version holds until that append commits), the
  -- appender's badge (readers find appenders in flight through it) and, for a moment, the
  -- position lock under which the transaction id and the position are taken together (position
  -- order = transaction-id order: see migrations/20260101000100_event_store.ts, step 5). A target
  -- list is evaluated left to right: lock, id, position, unlock; the planner keeps every column
  -- (the locks, nextval and pg_notify are volatile, the transaction id is used above), and
  -- OFFSET 0 keeps the subquery a node of its own that runs once (not pulled up into the INSERT's
  -- target list). The caller releases the position lock if the statement fails holding it.
  SELECT v.current,
         pg_advisory_xact_lock(7401, hashtext($1::text)) AS stream_locked,
         pg_advisory_xact_lock_shared(7406, 0) AS badge,
         pg_advisory_lock(7402, 0) AS position_locked,
         pg_current_xact_id() AS tx,
         nextval('event_store.global_position_seq') AS position,
         pg_advisory_unlock(7402, 0) AS position_unlocked,
         -- The wake-up for other processes' subscribers, when this append carries it (wakeups.ts):
         -- delivered when the append commits, and not at all if it does not.
         CASE WHEN $8::text IS NOT NULL THEN pg_notify($7::text, $8::text) END AS notified
  FROM (
    -- no_stream needs no read: version 0 is either free or the INSERT's unique key says why not.
    SELECT CASE WHEN $2::text = 'no_stream' THEN -1
                ELSE /* version lookup */ (SELECT coalesce(max(s.stream_version), -1) FROM event_store.events s WHERE s.stream = $1::text) /* end */
           END AS current
    -- OFFSET 0 keeps v a subquery of its own: pulled up, its CASE is copied into each use of
    -- v.current below, and the plan carried three copies of the version lookup to start up.
    OFFSET 0
  ) v
  -- A version compares as text: a cast of $2 to int would be folded by the planner of a custom
  -- plan even in the branches that do not run.
  WHERE pg_current_xact_id_if_assigned() IS NULL
    AND CASE $2::text WHEN 'any' THEN true WHEN 'no_stream' THEN true
                      WHEN 'stream_exists' THEN v.current >= 0
                      ELSE v.current::text = $2::text END
  OFFSET 0
) x
-- The caller knows the id; recorded_at as epoch milliseconds costs less to read than a timestamp.
RETURNING ev.global_position, ev.stream_version, date_part('epoch', ev.recorded_at) * 1000 AS recorded_ms
