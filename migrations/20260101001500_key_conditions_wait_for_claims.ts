import type { Knex } from 'knex';
import { CHECK_PRECONDITIONS } from './20260101000100_event_store.js';

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
 * that holds on a key whose row is newer than this transaction (its xmin after this append's
 * transaction id, the claimer having taken its positions after this append's) raises CS008 too.
 * A claim's row may be its subtransaction's, newer than its claimer: such an append goes round
 * once more for nothing. The cost when nothing is in flight: one lookup per `key` condition.
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

const CHECK_PRECONDITIONS_V2 = `
-- Raises CS005 for the first precondition of groups p_from..p_to that does not hold. A failing
-- 'key' condition first waits for a claim of its key in flight: committed, it raises CS008, for
-- the client to append again with positions after that claim's (20260101001500).
CREATE FUNCTION event_store.check_preconditions(
  p_found int[], p_size int[], p_from int, p_to int, p_streams text[],
  p_claim_group int[], p_claim_name text[], p_claim_value text[],
  p_cond_group int[], p_cond_stream text[], p_cond_kind text[], p_cond_arg text[], p_cond_message text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r record;
  v_name text;
BEGIN
  SELECT * INTO r FROM event_store.failed_precondition(p_found, p_size, p_from, p_to,
    p_claim_group, p_claim_name, p_claim_value, p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message);
  IF NOT FOUND THEN
    -- Every condition holds. A 'key' condition may hold on a key whose claim committed after this
    -- append took its positions (the claimer took its own after them), which would put this event
    -- ahead of the claim's in the log: a key claimed by a transaction newer than this one (its
    -- row's xmin, a claim's subtransaction or the claimer itself, after this transaction's id)
    -- sends the append round again. Keys of this call's own claims are left out; an older
    -- claimer's subtransaction may be newer than this transaction: one round too many.
    IF EXISTS (
      SELECT 1
      FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg) AS c(grp, stream, kind, arg)
      JOIN event_store.keys k ON k.name = split_part(c.arg, chr(31), 1) AND k.value = c.stream
      WHERE c.kind = 'key' AND c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp]
        AND age(k.xmin) < 0
        AND NOT EXISTS (SELECT 1 FROM unnest(p_claim_name, p_claim_value) AS cl(name, value) WHERE cl.name = k.name AND cl.value = k.value)
    ) THEN
      RAISE EXCEPTION 'a key this append needs was claimed by an append after it: append again' USING ERRCODE = 'CS008';
    END IF;
    RETURN;
  END IF;
  IF r.kind = 'key' THEN
    -- The key's name: the condition's argument up to the unit separator (its holder follows, if any).
    SELECT split_part(c.arg, chr(31), 1) INTO v_name
    FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg) AS c(grp, stream, kind, arg)
    WHERE c.grp = r.grp AND c.kind = 'key' AND c.stream = r.subject
    LIMIT 1;
    -- A key this statement sees (committed, or claimed by a later group of this call) failed the
    -- condition for another reason (another holder than the one named, or claimed too late in
    -- the call): refused. A key it does not see may be a claim in flight: waited for.
    IF NOT EXISTS (SELECT 1 FROM event_store.keys k WHERE k.name = v_name AND k.value = r.subject)
       AND event_store.key_claimed_meanwhile(v_name, r.subject) THEN
      RAISE EXCEPTION 'key % % was claimed by an append in flight: append again', v_name, r.subject USING ERRCODE = 'CS008',
        DETAIL = json_build_object('stream', p_streams[r.grp], 'key', v_name, 'value', r.subject)::text;
    END IF;
  END IF;
  RAISE EXCEPTION '%', r.message USING ERRCODE = 'CS005',
    DETAIL = json_build_object('stream', p_streams[r.grp], 'condition', r.kind, 'subject', r.subject)::text;
END
$fn$;
`;
