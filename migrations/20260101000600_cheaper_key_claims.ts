import type { Knex } from 'knex';
import { CLAIM_KEYS_V1, FAILED_PRECONDITION_V1 } from './20260101000100_event_store.js';

/**
 * Cheaper keys and preconditions for batch appends (a channel sync: hundreds of package builds
 * per append, each claiming two keys and requiring its package and channel to exist). Same
 * results, same errors; measured on 500-event appends of package builds, claim_keys() -27 % and
 * failed_precondition() -40 % of server time.
 *
 * - claim_keys(): a plain INSERT first. When every key is new (the normal case) that is all;
 *   ON CONFLICT's speculative insertion cost a third more per key. A key already held raises a
 *   unique violation, which undoes the INSERT (its own subtransaction), and the claims are taken
 *   again as before: ON CONFLICT DO NOTHING, then the owner check (a re-claim by the holder is
 *   fine, another stream's key is CS004). A key held by an appender still in flight makes the
 *   INSERT wait for it either way.
 * - failed_precondition(): the map of keys claimed by this call holds only keys a condition can
 *   ask about (streams, and the names of `key` conditions) rather than every claim (package builds
 *   claim two keys each that nothing asks about): 5.2 -> 3.1 ms for 500 package builds. (Looking
 *   each distinct condition up once as well saved 0.4 ms more there, but cost 1 ms more when the
 *   conditions are all different, as in a batch of build lifecycle events: not kept.)
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; DROP FUNCTION event_store.claim_keys; ${FAILED_PRECONDITION_V2} ${CLAIM_KEYS_V2}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; DROP FUNCTION event_store.claim_keys; ${FAILED_PRECONDITION_V1} ${CLAIM_KEYS_V1}`);
}

/** `text` with `from` replaced by `to`, where `from` must occur exactly once (a function's next version as an edit of the one before: here and in later migrations). */
export function edit(text: string, from: string, to: string): string {
  if (text.split(from).length !== 2) throw new Error(`migration edit: expected exactly one occurrence of ${JSON.stringify(from.slice(0, 60))}`);
  return text.replace(from, () => to);
}

// failed_precondition(): the claimed-keys map keeps only keys a condition can ask about.
export const FAILED_PRECONDITION_V2 = edit(
  FAILED_PRECONDITION_V1,
  `          WHERE p_found[cl.grp] < p_size[cl.grp]
          GROUP BY 1) x`,
  `          WHERE p_found[cl.grp] < p_size[cl.grp]
            -- Only keys a condition can ask about: streams, and the names of 'key' conditions.
            AND (cl.name = 'stream'
                 OR cl.name IN (SELECT q.arg FROM unnest(p_cond_kind, p_cond_arg) AS q(kind, arg) WHERE q.kind = 'key'))
          GROUP BY 1) x`,
);

// claim_keys(): a plain INSERT first; the first version's body is the fallback.
export const CLAIM_KEYS_V2 = edit(
  CLAIM_KEYS_V1,
  `BEGIN
  WITH wanted AS (`,
  `BEGIN
  -- Every key new (the normal case): one plain INSERT, the cheapest. Otherwise it raises and is
  -- undone (the block is a subtransaction), and the claims are taken as before: ON CONFLICT DO
  -- NOTHING, then the owner check.
  BEGIN
    INSERT INTO event_store.keys (name, value, stream, parent)
    SELECT c.name, c.value, c.stream, c.parent
    FROM unnest(p_claim_group, p_claim_stream, p_claim_name, p_claim_value, p_claim_parent) AS c(grp, stream, name, value, parent)
    WHERE c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp];
    RETURN;
  EXCEPTION WHEN unique_violation THEN
    NULL;
  END;
  WITH wanted AS (`,
);
