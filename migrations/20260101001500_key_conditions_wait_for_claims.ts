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
 * and the insertion waits for that appender to end. Committed, the insertion finds the conflict,
 * and the conditions are checked once more (they see it now); rolled back, or never there, the
 * insertion goes in and is undone, and the condition fails as before. Only a failing condition
 * pays for this: those that hold cost what they cost.
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
-- 'key' condition first waits for a claim of its key in flight, then the conditions are checked
-- once more (20260101001500).
CREATE FUNCTION event_store.check_preconditions(
  p_found int[], p_size int[], p_from int, p_to int, p_streams text[],
  p_claim_group int[], p_claim_name text[], p_claim_value text[],
  p_cond_group int[], p_cond_stream text[], p_cond_kind text[], p_cond_arg text[], p_cond_message text[]
) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  r record;
  v_key text;
  v_waited text[] := '{}';
BEGIN
  LOOP
    SELECT * INTO r FROM event_store.failed_precondition(p_found, p_size, p_from, p_to,
      p_claim_group, p_claim_name, p_claim_value, p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg, p_cond_message);
    EXIT WHEN NOT FOUND;
    IF r.kind = 'key' THEN
      -- The key's name (the condition's argument up to the unit separator; its holder follows, if
      -- any) and value.
      SELECT split_part(c.arg, chr(31), 1) || chr(31) || r.subject INTO v_key
      FROM unnest(p_cond_group, p_cond_stream, p_cond_kind, p_cond_arg) AS c(grp, stream, kind, arg)
      WHERE c.grp = r.grp AND c.kind = 'key' AND c.stream = r.subject
      LIMIT 1;
      -- Once a key: one held all along by another stream than the condition's holder, or claimed
      -- by a later group of this call, fails the same way again.
      IF NOT v_key = ANY (v_waited) THEN
        v_waited := v_waited || v_key;
        CONTINUE WHEN event_store.key_claimed_meanwhile(split_part(v_key, chr(31), 1), r.subject);
      END IF;
    END IF;
    RAISE EXCEPTION '%', r.message USING ERRCODE = 'CS005',
      DETAIL = json_build_object('stream', p_streams[r.grp], 'condition', r.kind, 'subject', r.subject)::text;
  END LOOP;
END
$fn$;
`;
