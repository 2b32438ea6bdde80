import type { Knex } from 'knex';
import { CLAIM_KEYS_V2, edit } from './20260101000600_cheaper_key_claims.js';

/**
 * A key a stream holds is a duplicate for another claim of the same stream unless both name the
 * same `parent`. The keys of rows inside an aggregate (a package's builds, a build's artifacts, a
 * namespace's role mappings and grants, a settings prefix's ids) are all claimed by that
 * aggregate's stream, and a re-claim by the holder used to be fine: a package build registered
 * again under another id (a channel re-sync), or an artifact id used twice in one build, went into
 * the log and then stopped its projection on the table's unique key. Those claims now name what
 * holds the key within the stream (src/decide/keys.ts): the event that claims it, or, for a role
 * grant, the pair it grants (a grant of the same pair again may keep its id). For the key
 * `stream`, whose parent is the parent aggregate, and for keys claimed without a parent, nothing
 * changes. Keys already in the log hold no parent for these names, so every new claim of them is
 * a duplicate, as it should be; but for role grants, whose ids already held get their pair from
 * the grant that claimed them.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.claim_keys; ${CLAIM_KEYS_V3}`);
  // The parents of other keys are never looked up by parent (only "no_children" does that, for
  // the key stream): the index keeps to stream keys, rather than take a random event id for
  // every package build of a channel sync.
  await knex.raw(`DROP INDEX event_store.keys_parent_idx;
    CREATE INDEX keys_parent_idx ON event_store.keys (parent) WHERE name = 'stream' AND parent IS NOT NULL`);
  // Role grant ids already held name their pair, as new claims do, so that a grant of the same
  // pair again keeps being accepted with its id: the pair is in the grant that claimed the id.
  await knex.raw(`
    UPDATE event_store.keys k
       SET parent = (SELECT 'namespace-' || (e.data ->> 'other_namespace_id')
                       FROM event_store.events e
                      WHERE e.stream = k.stream AND e.type = 'NamespaceRoleGranted' AND e.data ->> 'id' = k.value
                      ORDER BY e.global_position LIMIT 1)
     WHERE k.name = 'namespace_role_mapping_v2.id' AND k.parent IS NULL`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.claim_keys; ${CLAIM_KEYS_V2}`);
  await knex.raw(`DROP INDEX event_store.keys_parent_idx;
    CREATE INDEX keys_parent_idx ON event_store.keys (parent) WHERE parent IS NOT NULL`);
}

export const CLAIM_KEYS_V3 = edit(
  edit(
    CLAIM_KEYS_V2,
    `  -- Some keys were there already: fine if this stream holds them, a duplicate otherwise.
  SELECT c.name, c.value, c.stream, k.stream AS owner INTO r
  FROM unnest(p_claim_group, p_claim_stream, p_claim_name, p_claim_value) AS c(grp, stream, name, value)`,
    `  -- Some keys were there already: fine if this stream holds them for the same parent (the
  -- thing within the stream that holds the key), a duplicate otherwise.
  SELECT c.name, c.value, c.stream, k.stream AS owner INTO r
  FROM unnest(p_claim_group, p_claim_stream, p_claim_name, p_claim_value, p_claim_parent) AS c(grp, stream, name, value, parent)`,
  ),
  `AND k.stream <> c.stream
  LIMIT 1;`,
  `AND (k.stream <> c.stream OR k.parent IS DISTINCT FROM c.parent)
  LIMIT 1;`,
);
