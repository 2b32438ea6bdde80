import type { Knex } from 'knex';
import { CHECK_PRECONDITIONS } from './20260101000100_event_store.js';
import { edit } from './20260101000600_cheaper_key_claims.js';

/**
 * A `key` precondition waits for a claim of its key that is in flight. The other conditions are
 * held by the stream locks of append_events() (an `exists` takes the stream's lock shared, and its
 * creator holds it exclusive until it commits), but a key such as a package build's id is claimed
 * under its package's stream, which the condition does not know: the check read the keys as
 * committed, and an append that needed a package build another appender was registering at that
 * moment was refused, and in `serve` stored as rejected for good.
 *
 * When a `key` condition fails, check_preconditions() now tries to insert the key itself, in a
 * subtransaction it always undoes: a claim in flight holds the key's entry in the unique index,
 * and the insertion waits for that appender to end. Rolled back (or never there), the insertion
 * goes in and is undone, and the condition fails as before. Committed, the insertion finds the
 * conflict, and the append raises CS008 rather than go on: its positions were taken before that
 * appender's, and an event that needs the key must come after the event that claimed it in the
 * log's order (a review found the first version of this migration, which checked once more and
 * went on, putting a package build's use before its registration). The client appends again, in
 * a new transaction with new positions, and the condition then holds (src/log/postgres/append.ts).
 *
 * The same order is kept when the claim committed before the check, with no wait: a condition
 * that holds on a key whose holder's last event is newer than this append (its transaction id,
 * in 64 bits, after this one's: the claimer took its positions after this append's) raises CS008
 * too. (A first version compared the key row's xmin: 32 bits, which a key claimed 2^31
 * transactions ago passes as newer for ever, a review found.) And a key held, as the condition
 * asks, by the time the condition has failed, claimed between the check's snapshot and now, is
 * not refused but appended again. The cost when nothing is in flight: one lookup per `key`
 * condition, and none for appends without one.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`${KEY_CLAIMED_MEANWHILE} DROP FUNCTION event_store.check_preconditions; ${CHECK_PRECONDITIONS_V2}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.check_preconditions; DROP FUNCTION event_store.key_claimed_meanwhile; ${CHECK_PRECONDITIONS}`);
}

const KEY_CLAIMED_MEANWHILE = `
-- Whether key (p_name, p_value) is held once every claim of it in flight has ended: the insertion
-- waits for an appender whose claim is not committed yet. What it inserts is undone.
CREATE FUNCTION event_store.key_claimed_meanwhile(p_name text, p_value text) RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO event_store.keys (name, value, stream) VALUES (p_name, p_value, '') ON CONFLICT (name, value) DO NOTHING;
  IF NOT FOUND THEN
    RETURN true;
  END IF;
  RAISE EXCEPTION 'undo the probe of key %', p_name USING ERRCODE = 'CS0P0';
EXCEPTION WHEN SQLSTATE 'CS0P0' THEN
  RETURN false;
END
$fn$;
`;

const CHECK_PRECONDITIONS_V2 = [
  [
    '-- Raises CS005 for the first precondition of groups p_from..p_to that does not hold.\n',
    `-- Raises CS005 for the first precondition of groups p_from..p_to that does not hold. A failing
-- 'key' condition first waits for a claim of its key in flight: committed, it raises CS008, for
-- the client to append again with positions after that claim's; so does a 'key' condition that
-- holds on a key whose holder's last event is newer than this append (20260101001500).
`,
  ],
  ['  r record;\nBEGIN', '  r record;\n  v_name text;\n  v_holder text;\nBEGIN'],
  [
    `  IF FOUND THEN
    RAISE EXCEPTION '%', r.message USING ERRCODE = 'CS005',
      DETAIL = json_build_object('stream', p_streams[r.grp], 'condition', r.kind, 'subject', r.subject)::text;
  END IF;
`,
    `  IF NOT FOUND THEN
    -- Every condition holds. A 'key' condition may hold on a key whose claim committed after this
    -- append took its positions (its claimer took its own after them): this event would come
    -- ahead of the claim's in the log. The claim came with an event of the stream that holds the
    -- key; that stream's last event newer than this transaction (transaction ids in 64 bits, in
    -- the order of the positions) sends the append round again. A newer event of that stream
    -- that did not claim the key costs one round for nothing.
    IF 'key' = ANY (p_cond_kind) AND EXISTS (
      SELECT 1
      FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg) AS c(grp, stream, kind, arg)
      JOIN event_store.keys k ON k.name = split_part(c.arg, chr(31), 1) AND k.value = c.stream
      CROSS JOIN LATERAL (
        SELECT e.transaction_id FROM event_store.events e WHERE e.stream = k.stream ORDER BY e.stream_version DESC LIMIT 1
      ) last
      WHERE c.kind = 'key' AND c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp]
        AND last.transaction_id > pg_current_xact_id()
    ) THEN
      RAISE EXCEPTION 'a key this append needs was claimed by an append after it: append again' USING ERRCODE = 'CS008';
    END IF;
    RETURN;
  END IF;
  IF r.kind = 'key' THEN
    -- The key's name and the holder the condition names, if any (the argument: name, chr(31), holder).
    SELECT split_part(c.arg, chr(31), 1), split_part(c.arg, chr(31), 2) INTO v_name, v_holder
    FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg) AS c(grp, stream, kind, arg)
    WHERE c.grp = r.grp AND c.kind = 'key' AND c.stream = r.subject
    LIMIT 1;
    -- Held now as the condition asks, and not by a claim of this call (a later group's, which
    -- does not count): claimed by an append that committed since the check's snapshot.
    IF EXISTS (
      SELECT 1 FROM event_store.keys k
      WHERE k.name = v_name AND k.value = r.subject AND (v_holder = '' OR k.stream = v_holder)
        AND NOT EXISTS (SELECT 1 FROM unnest(p_claim_name, p_claim_value) AS cl(name, value) WHERE cl.name = v_name AND cl.value = r.subject)
    )
    -- Not there: perhaps claimed by an append in flight, which the probe waits for.
    OR (NOT EXISTS (SELECT 1 FROM event_store.keys k WHERE k.name = v_name AND k.value = r.subject)
        AND event_store.key_claimed_meanwhile(v_name, r.subject)) THEN
      RAISE EXCEPTION 'key % % was claimed by an append in flight: append again', v_name, r.subject USING ERRCODE = 'CS008',
        DETAIL = json_build_object('stream', p_streams[r.grp], 'key', v_name, 'value', r.subject)::text;
    END IF;
  END IF;
  RAISE EXCEPTION '%', r.message USING ERRCODE = 'CS005',
    DETAIL = json_build_object('stream', p_streams[r.grp], 'condition', r.kind, 'subject', r.subject)::text;
`,
  ],
].reduce((text, [from, to]) => edit(text, from!, to!), CHECK_PRECONDITIONS);
