import type { Knex } from 'knex';

/**
 * The event log: schema `event_store`.
 *
 * - `events`: the append-only log. `transaction_id` and `global_position` are allocated together
 *   under one short lock, so position order equals transaction-id order among appenders. A reader
 *   that only takes events below the oldest appender still in flight therefore never skips an
 *   event that commits later with a lower position (src/log/postgres/read-bound.sql).
 * - `keys`: the small index append-time rules need, kept atomically with the log: unique keys of
 *   conda-store's tables (claimed with the event that introduces them), the existence of each
 *   aggregate (key `stream`) and its parent aggregate (for "purge only after its children").
 * - `append_events()`: one round trip per append; see the comments inside.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE SCHEMA event_store;

    CREATE SEQUENCE event_store.global_position_seq AS bigint MINVALUE 1;

    CREATE TABLE event_store.events (
      global_position bigint      NOT NULL,
      id              uuid        NOT NULL,
      stream          text        NOT NULL,
      stream_version  integer     NOT NULL,
      type            text        NOT NULL,
      data            jsonb       NOT NULL,
      metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
      recorded_at     timestamptz NOT NULL DEFAULT now(),
      transaction_id  xid8        NOT NULL,
      CONSTRAINT events_pkey PRIMARY KEY (global_position),
      CONSTRAINT events_id_key UNIQUE (id),
      CONSTRAINT events_stream_version_key UNIQUE (stream, stream_version),
      CONSTRAINT events_stream_version_check CHECK (stream_version >= 0)
    );
    ALTER SEQUENCE event_store.global_position_seq OWNED BY event_store.events.global_position;

    -- The log is append-only whoever connects: UPDATE, DELETE and TRUNCATE raise. ENABLE ALWAYS
    -- keeps the triggers firing even under session_replication_role = replica.
    CREATE FUNCTION event_store.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
    BEGIN
      RAISE EXCEPTION 'event_store.events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'CS006';
    END
    $fn$;
    CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_store.events
      FOR EACH ROW EXECUTE FUNCTION event_store.refuse_change();
    CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.events
      FOR EACH STATEMENT EXECUTE FUNCTION event_store.refuse_change();
    ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_append_only;
    ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_no_truncate;

    CREATE TABLE event_store.keys (
      name   text NOT NULL,
      value  text NOT NULL,
      stream text NOT NULL,
      parent text,
      CONSTRAINT keys_pkey PRIMARY KEY (name, value)
    );
    CREATE INDEX keys_stream_idx ON event_store.keys (stream);
    CREATE INDEX keys_parent_idx ON event_store.keys (parent) WHERE parent IS NOT NULL;
  `);

  await knex.raw(APPEND_EVENTS_FUNCTION);

  // The id allocator: one sequence per aggregate kind (events.md, "Identity and determinism").
  // Listed here rather than imported so that this migration never changes after it has run.
  for (const kind of ID_KINDS) {
    await knex.raw(`CREATE SEQUENCE event_store.ids_${kind} AS integer MINVALUE 1`);
  }
}

const ID_KINDS = [
  'namespace', 'namespace_role_mapping', 'namespace_role_mapping_v2', 'environment', 'specification',
  'build', 'build_artifact', 'solve', 'conda_channel', 'conda_package', 'conda_package_build',
  'keyvaluestore', 'worker',
];

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP SCHEMA event_store CASCADE');
}

/*
 * Errors are raised with SQLSTATEs of class CS, mapped to typed errors in src/log/postgres/errors.ts:
 *   CS001 wrong expected version   CS002 same id, different content   CS003 partly appended group
 *   CS004 unique key taken          CS005 precondition failed          CS006 append-only violation
 *   CS007 append must be the first write of its transaction
 * DETAIL carries a JSON object with the facts (stream, expected, actual, key, ...).
 */
// The functions as this migration creates them. Later migrations that replace one import its
// text from here for their `down`, so that a rollback restores exactly this version.

/** event_store.failed_precondition(), first version (replaced by 20260101000600). */
export const FAILED_PRECONDITION_V1 = `
-- The first precondition of the appended groups p_from..p_to that does not hold, or nothing. Keys claimed by this call count only for groups after the claiming one:
-- a batch may create a namespace and then an environment in it, not the other way round.
-- Set-based (one hash join), so a batch of thousands of package builds is one statement.
CREATE FUNCTION event_store.failed_precondition(
  p_found int[], p_size int[], p_from int, p_to int,
  p_claim_group int[], p_claim_name text[], p_claim_value text[],
  p_cond_group int[], p_cond_stream text[], p_cond_kind text[], p_cond_arg text[], p_cond_message text[]
) RETURNS TABLE (grp int, subject text, kind text, message text) LANGUAGE sql STABLE AS $fn$
  -- The keys claimed by this call, as one JSON object (name, unit separator, value) -> first
  -- group: each condition looks up in it (a binary search) rather than joining, since the plan of
  -- a join between two arrays of unknown size can be a nested loop, quadratic in the batch.
  -- MATERIALIZED: built once per call. Inlined, a generic plan put the aggregate on the inner side
  -- of a nested loop and built it again for every condition (3 s for 2,000 groups).
  WITH claimed AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(k, grp), '{}'::jsonb) AS groups
    FROM (SELECT cl.name || chr(31) || cl.value AS k, min(cl.grp) AS grp
          FROM unnest(p_claim_group, p_claim_name, p_claim_value) AS cl(grp, name, value)
          WHERE p_found[cl.grp] < p_size[cl.grp]
          GROUP BY 1) x
  ), conditions AS (
    SELECT c.grp, c.stream, c.kind, c.arg, c.message, c.ord,
           CASE c.kind WHEN 'key' THEN c.arg ELSE 'stream' END AS key_name
    FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message)
           WITH ORDINALITY AS c(grp, stream, kind, arg, message, ord)
    WHERE p_found[c.grp] < p_size[c.grp] AND c.grp BETWEEN p_from AND p_to
  )
  SELECT c.grp, c.stream, c.kind, c.message
  FROM conditions c CROSS JOIN claimed m
  WHERE NOT (CASE c.kind
    -- 'exists': the aggregate of stream c.stream exists (its key "stream" is held, not by a later group)
    WHEN 'exists' THEN coalesce((m.groups ->> ('stream' || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream)
    -- 'key': the key (c.arg, c.stream) is held, e.g. a package build id
    WHEN 'key' THEN coalesce((m.groups ->> (c.arg || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream)
    -- 'child_of': the aggregate of stream c.stream exists and its parent is c.arg
    WHEN 'child_of' THEN coalesce((m.groups ->> ('stream' || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream AND k.parent = c.arg)
    WHEN 'no_children' THEN NOT EXISTS (
      SELECT 1 FROM event_store.keys k
      WHERE k.parent = c.stream AND k.name = 'stream'
        AND coalesce((m.groups ->> ('stream' || chr(31) || k.value))::int < c.grp, true))
    -- 'version': the stream is at version c.arg (the events of this call are not inserted yet)
    WHEN 'version' THEN c.arg::int = coalesce(
      (SELECT max(e.stream_version) FROM event_store.events e WHERE e.stream = c.stream), -1)
    ELSE false
  END)
  ORDER BY c.grp, c.ord
  LIMIT 1
$fn$;
`;

export const CHECK_PRECONDITIONS = `
-- Raises CS005 for the first precondition of groups p_from..p_to that does not hold.
CREATE FUNCTION event_store.check_preconditions(
  p_found int[], p_size int[], p_from int, p_to int, p_streams text[],
  p_claim_group int[], p_claim_name text[], p_claim_value text[],
  p_cond_group int[], p_cond_stream text[], p_cond_kind text[], p_cond_arg text[], p_cond_message text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r record;
BEGIN
  SELECT * INTO r FROM event_store.failed_precondition(p_found, p_size, p_from, p_to,
    p_claim_group, p_claim_name, p_claim_value, p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message);
  IF FOUND THEN
    RAISE EXCEPTION '%', r.message USING ERRCODE = 'CS005',
      DETAIL = json_build_object('stream', p_streams[r.grp], 'condition', r.kind, 'subject', r.subject)::text;
  END IF;
END
$fn$;
`;

/** event_store.claim_keys(), first version (replaced by 20260101000600). */
export const CLAIM_KEYS_V1 = `
-- Claims keys for the appended groups p_from..p_to. A key held by another
-- stream is a duplicate; re-claiming a key one's own stream holds is not. Arrays are zipped, never
-- joined: a join of two arrays of unknown size may be planned as a quadratic nested loop.
CREATE FUNCTION event_store.claim_keys(
  p_found int[], p_size int[], p_from int, p_to int,
  p_claim_group int[], p_claim_stream text[], p_claim_name text[], p_claim_value text[], p_claim_parent text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r record;
  v_wanted bigint;
  v_inserted bigint;
BEGIN
  WITH wanted AS (
    SELECT c.name, c.value, c.stream, c.parent
    FROM unnest(p_claim_group, p_claim_stream, p_claim_name, p_claim_value, p_claim_parent) AS c(grp, stream, name, value, parent)
    WHERE c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp]
  ), inserted AS (
    INSERT INTO event_store.keys (name, value, stream, parent)
    SELECT w.name, w.value, w.stream, w.parent FROM wanted w
    ON CONFLICT (name, value) DO NOTHING
    RETURNING 1
  )
  SELECT (SELECT count(*) FROM wanted), (SELECT count(*) FROM inserted) INTO v_wanted, v_inserted;
  IF v_inserted = v_wanted THEN
    RETURN;
  END IF;
  -- Some keys were there already: fine if this stream holds them, a duplicate otherwise.
  SELECT c.name, c.value, c.stream, k.stream AS owner INTO r
  FROM unnest(p_claim_group, p_claim_stream, p_claim_name, p_claim_value) AS c(grp, stream, name, value)
  JOIN event_store.keys k ON k.name = c.name AND k.value = c.value
  WHERE c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp] AND k.stream <> c.stream
  LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'duplicate %: "%" is already taken by %', r.name, r.value, r.owner
      USING ERRCODE = 'CS004',
            DETAIL = json_build_object('key', r.name, 'value', r.value, 'stream', r.stream, 'taken_by', r.owner)::text;
  END IF;
END
$fn$;
`;

export const APPEND_EVENTS = `
CREATE FUNCTION event_store.append_events(
  p_ids         uuid[],   -- per event
  p_groups      int[],    -- per event: index (1-based) of its group
  p_event_streams text[], -- per event: its group's stream (zipped with the events, never looked up)
  p_types       text[],
  p_data        jsonb[],
  p_metadata    jsonb[],
  p_streams     text[],   -- per group: stream written
  p_expected    text[],   -- per group: 'any' | 'no_stream' | 'stream_exists' | '<version>'
  p_claim_group int[],    -- per claimed key
  p_claim_stream text[],  -- per claimed key: its group's stream
  p_claim_name  text[],
  p_claim_value text[],
  p_claim_parent text[],
  p_release_group int[],  -- per released key (released keys are the group's stream's own)
  p_release_name  text[],
  p_release_value text[], -- NULL: every key of that name the stream holds
  p_cond_group  int[],    -- per precondition
  p_cond_stream text[],
  p_cond_kind   text[],   -- 'exists' | 'key' | 'child_of' | 'version' | 'no_children' (see failed_precondition)
  p_cond_arg    text[],
  p_cond_message text[]
) RETURNS TABLE (event_id uuid, global_position bigint, stream_version int, recorded_at timestamptz, duplicate boolean)
LANGUAGE plpgsql
-- Every statement here is a lookup by key. A plan cached while the log was nearly empty (a hash
-- join over a sequential scan) would otherwise read the whole log on every append until the next
-- ANALYZE.
SET enable_seqscan = off
AS $fn$
DECLARE
  n_events  int := coalesce(cardinality(p_ids), 0);
  n_groups  int := coalesce(cardinality(p_streams), 0);
  v_found   int[];          -- per group: how many of its events are already in the log
  v_size    int[];          -- per group: how many events it has
  v_pos     bigint[];       -- per event: global position (existing or new)
  v_ver     int[];          -- per event: stream version
  v_at      timestamptz[];  -- per event: recorded_at
  v_dup     boolean[];      -- per event: already in the log
  v_versions int[];         -- per distinct stream: current version, advanced as events are placed
  v_group_stream int[];     -- per group: index of its stream in v_versions
  v_checked boolean[];      -- per group: expected version checked
  v_cur     int;
  v_exp     text;
  v_first   bigint;
  v_new     int := 0;
  v_tx      xid8;
  v_now     timestamptz := now();
  r         record;
  v_release_groups int[];   -- the groups with releases, in call order
  v_from    int;            -- first group of the current run
  g         int;
  i         int;
BEGIN
  -- The transaction id must be assigned under the position lock below. If this transaction
  -- already wrote something, its id is older than its positions and readers could skip events.
  IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
    RAISE EXCEPTION 'append_events must be the first write of its transaction' USING ERRCODE = 'CS007';
  END IF;

  -- 1. Lock every stream written (exclusive) or read by a precondition (shared), in one global
  --    order (by key), so that concurrent appenders never deadlock. Advisory locks need no
  --    transaction id, which keeps step 5 the first write.
  PERFORM CASE WHEN l.exclusive THEN pg_advisory_xact_lock(7401, l.k)
               ELSE pg_advisory_xact_lock_shared(7401, l.k) END
  FROM (
    SELECT hashtext(s.stream) AS k, bool_or(s.exclusive) AS exclusive
    FROM (SELECT unnest(p_streams) AS stream, true AS exclusive
          UNION ALL SELECT unnest(p_cond_stream), false) s
    GROUP BY 1 ORDER BY 1
  ) l;
  -- The appender's badge, held to commit and shared by all appenders: readers find the transaction
  -- ids of appenders in flight through it (src/log/postgres/read-bound.sql), so that only they, not
  -- every writing transaction of the server, hold readers back.
  PERFORM pg_advisory_xact_lock_shared(7406, 0);

  -- 2. Idempotency: events whose id is already in the log must be the same event.
  v_found := array_fill(0, ARRAY[n_groups]);
  v_size  := array_fill(0, ARRAY[n_groups]);
  v_pos   := array_fill(NULL::bigint, ARRAY[n_events]);
  v_ver   := array_fill(NULL::int, ARRAY[n_events]);
  v_at    := array_fill(NULL::timestamptz, ARRAY[n_events]);
  v_dup   := array_fill(false, ARRAY[n_events]);
  FOR i IN 1..n_events LOOP
    v_size[p_groups[i]] := v_size[p_groups[i]] + 1;
  END LOOP;
  FOR r IN
    SELECT x.ord::int AS i, x.grp, x.id, e.stream, e.type, e.global_position, e.stream_version, e.recorded_at,
           (e.stream <> x.stream OR e.type <> x.type OR e.data <> x.data) AS differs
    FROM unnest(p_ids, p_groups, p_event_streams, p_types, p_data) WITH ORDINALITY AS x(id, grp, stream, type, data, ord)
    JOIN event_store.events e ON e.id = x.id
  LOOP
    g := r.grp;
    IF r.differs THEN
      RAISE EXCEPTION 'event % is already in the log with different content', r.id
        USING ERRCODE = 'CS002',
              DETAIL = json_build_object('id', r.id, 'stream', r.stream, 'type', r.type,
                                         'global_position', r.global_position)::text;
    END IF;
    v_found[g] := v_found[g] + 1;
    v_pos[r.i] := r.global_position;
    v_ver[r.i] := r.stream_version;
    v_at[r.i]  := r.recorded_at;
    v_dup[r.i] := true;
  END LOOP;
  FOR g IN 1..n_groups LOOP
    IF v_found[g] > 0 AND v_found[g] < v_size[g] THEN
      RAISE EXCEPTION 'append to % mixes % event(s) already in the log with % new one(s)',
        p_streams[g], v_found[g], v_size[g] - v_found[g]
        USING ERRCODE = 'CS003', DETAIL = json_build_object('stream', p_streams[g])::text;
    END IF;
  END LOOP;

  -- 3. Current version of each written stream (-1: no stream), read under the locks above, in
  --    an array indexed by stream, and for each group the index of its stream.
  WITH streams AS (
    SELECT d.stream, row_number() OVER (ORDER BY d.stream)::int AS idx
    FROM (SELECT DISTINCT unnest(p_streams) AS stream) d
  )
  SELECT (SELECT array_agg(coalesce((SELECT max(e.stream_version) FROM event_store.events e WHERE e.stream = s.stream), -1)
                           ORDER BY s.idx) FROM streams s),
         (SELECT array_agg(s.idx ORDER BY g.ord) FROM unnest(p_streams) WITH ORDINALITY AS g(stream, ord)
                                                 JOIN streams s ON s.stream = g.stream)
    INTO v_versions, v_group_stream;

  -- 4. Expected versions, checked at each group's first event in call order (a group's events
  --    are contiguous); stream versions of the new events. One pass over the events.
  v_checked := array_fill(false, ARRAY[n_groups]);
  FOR i IN 1..n_events LOOP
    g := p_groups[i];
    CONTINUE WHEN v_found[g] = v_size[g];
    v_cur := v_versions[v_group_stream[g]];
    IF NOT v_checked[g] THEN
      v_checked[g] := true;
      v_exp := coalesce(p_expected[g], 'any');
      IF NOT (CASE v_exp
        WHEN 'any' THEN true
        WHEN 'no_stream' THEN v_cur = -1
        WHEN 'stream_exists' THEN v_cur >= 0
        ELSE v_cur = v_exp::int
      END) THEN
        RAISE EXCEPTION 'wrong expected version for stream %: expected %, actual %', p_streams[g], v_exp,
          CASE WHEN v_cur = -1 THEN 'no_stream' ELSE v_cur::text END
          USING ERRCODE = 'CS001',
                DETAIL = json_build_object('stream', p_streams[g], 'expected', v_exp, 'actual', v_cur)::text;
      END IF;
    END IF;
    v_ver[i] := v_cur + 1;
    v_versions[v_group_stream[g]] := v_cur + 1;
    v_new := v_new + 1;
  END LOOP;

  IF v_new > 0 THEN
    -- 5. Allocate the transaction id and a contiguous block of positions under one short lock:
    --    this is what makes position order equal transaction-id order. The lock is a session
    --    lock released right away (an xact lock would serialise every commit and its fsync).
    --    A session lock outlives an aborted transaction: taking and releasing it inside one block
    --    whose handler releases it leaves no moment where a cancel or a timeout could return the
    --    connection to its pool still holding it (every other appender would wait on it).
    BEGIN
      PERFORM pg_advisory_lock(7402, 0);
      v_tx := pg_current_xact_id();
      v_first := nextval('event_store.global_position_seq');
      IF v_new > 1 THEN
        PERFORM setval('event_store.global_position_seq', v_first + v_new - 1);
      END IF;
      PERFORM pg_advisory_unlock(7402, 0);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
      -- Canceled while waiting for the lock, it was never taken: unlocking only warns.
      PERFORM pg_advisory_unlock(7402, 0);
      RAISE;
    END;

    FOR i IN 1..n_events LOOP
      IF NOT v_dup[i] THEN
        v_pos[i] := v_first;
        v_at[i] := v_now;
        v_first := v_first + 1;
      END IF;
    END LOOP;

    -- 6. Keys and preconditions, run by run. A run of groups without releases goes in bulk:
    --    claims first, then every precondition in one statement (claims of this call count only
    --    for later groups). A group with releases (a purge, rare) goes alone: preconditions,
    --    releases, claims, so that a purge and the re-creation of the same name later in the batch
    --    see each other in order. A batch with one purge is thus three bulk steps, not one step
    --    per group.
    v_release_groups := ARRAY(SELECT DISTINCT x FROM unnest(p_release_group) AS x ORDER BY 1);
    v_from := 1;
    FOR i IN 1..cardinality(v_release_groups) + 1 LOOP
      g := CASE WHEN i <= cardinality(v_release_groups) THEN v_release_groups[i] ELSE n_groups + 1 END;
      IF v_from < g THEN
        -- (Each call costs a fraction of a millisecond even with nothing to do: skip empty ones.)
        IF coalesce(cardinality(p_claim_name), 0) > 0 THEN
          PERFORM event_store.claim_keys(v_found, v_size, v_from, g - 1,
            p_claim_group, p_claim_stream, p_claim_name, p_claim_value, p_claim_parent);
        END IF;
        IF coalesce(cardinality(p_cond_kind), 0) > 0 THEN
          PERFORM event_store.check_preconditions(v_found, v_size, v_from, g - 1, p_streams,
            p_claim_group, p_claim_name, p_claim_value, p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message);
        END IF;
      END IF;
      EXIT WHEN g > n_groups;
      IF v_found[g] < v_size[g] THEN
        PERFORM event_store.check_preconditions(v_found, v_size, g, g, p_streams,
          p_claim_group, p_claim_name, p_claim_value, p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message);
        DELETE FROM event_store.keys k
        USING unnest(p_release_group, p_release_name, p_release_value) AS rl(grp, name, value)
        WHERE rl.grp = g AND k.name = rl.name AND k.stream = p_streams[g] AND (rl.value IS NULL OR k.value = rl.value);
        PERFORM event_store.claim_keys(v_found, v_size, g, g,
          p_claim_group, p_claim_stream, p_claim_name, p_claim_value, p_claim_parent);
      END IF;
      v_from := g + 1;
    END LOOP;

    -- 7. The events, after the preconditions, which see the log as it was before this call.
    INSERT INTO event_store.events
      (global_position, id, stream, stream_version, type, data, metadata, recorded_at, transaction_id)
    SELECT x.pos, x.id, x.stream, x.ver, x.type, x.data, coalesce(x.meta, '{}'::jsonb), v_now, v_tx
    FROM unnest(v_pos, p_ids, p_event_streams, v_ver, p_types, p_data, p_metadata, v_dup)
      AS x(pos, id, stream, ver, type, data, meta, dup)
    WHERE NOT x.dup;
  END IF;

  RETURN QUERY
    SELECT x.id, x.pos, x.ver, x.at, x.dup
    FROM unnest(p_ids, v_pos, v_ver, v_at, v_dup) AS x(id, pos, ver, at, dup);
END
$fn$;
`;

const APPEND_EVENTS_FUNCTION = [FAILED_PRECONDITION_V1, CHECK_PRECONDITIONS, CLAIM_KEYS_V1, APPEND_EVENTS].join('\n');
