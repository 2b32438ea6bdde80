import type { Knex } from 'knex';
import { edit } from './20260101000600_cheaper_key_claims.js';
import { CLAIM_KEYS_V3 } from './20260101001100_claims_of_the_same_stream.js';

/**
 * claim_keys() inserts an append's keys in one order, by name and value, rather than in the order
 * its caller listed them. A claim waits for an uncommitted claim of the same key by another
 * append; two appends that claimed the same keys in two orders each held one and waited for the
 * other, until PostgreSQL's deadlock detector failed one of them with 40P01, rather than the
 * duplicate key it was due once the other committed. In one order, the second waits for the
 * first at their first common key, holding none of the keys that one still needs.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.claim_keys; ${CLAIM_KEYS_V4}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.claim_keys; ${CLAIM_KEYS_V3}`);
}

// Claims of one key by several groups of a call keep the call's order (the group, after the key):
// the first of them takes it, as before.
const CLAIM_KEYS_V4 = [
  [
    `    WHERE c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp];
    RETURN;`,
    `    WHERE c.grp BETWEEN p_from AND p_to AND p_found[c.grp] < p_size[c.grp]
    ORDER BY c.name, c.value, c.grp;
    RETURN;`,
  ],
  [
    `  WITH wanted AS (
    SELECT c.name, c.value, c.stream, c.parent
`,
    `  WITH wanted AS (
    SELECT c.name, c.value, c.stream, c.parent, c.grp
`,
  ],
  [
    `    SELECT w.name, w.value, w.stream, w.parent FROM wanted w
    ON CONFLICT`,
    `    SELECT w.name, w.value, w.stream, w.parent FROM wanted w
    ORDER BY w.name, w.value, w.grp
    ON CONFLICT`,
  ],
].reduce((text, [from, to]) => edit(text, from!, to!), CLAIM_KEYS_V3);
