import type { Knex } from 'knex';
import { edit } from './20260101000600_cheaper_key_claims.js';
import { FAILED_PRECONDITION_V3 } from './20260101000900_precondition_index_probes.js';

/**
 * A `key` precondition may name the stream that must hold the key (`holder`): an ArtifactDeleted
 * must name an artifact of its own build, a NamespaceRoleMappingRemoved a mapping of its own
 * namespace. The condition travels as before (stream: the key's value; arg: its name), the holder
 * after the name and a unit separator (chr(31)), which no key name holds. Without a holder, a
 * condition means what it meant. The lookup keeps its OFFSET 0 (20260101000900: one index probe
 * per condition, never a hash of every key).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V4}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V3}`);
}

const FAILED_PRECONDITION_V4 = edit(
  edit(
    FAILED_PRECONDITION_V3,
    `    WHEN 'key' THEN coalesce((m.groups ->> (c.arg || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream OFFSET 0)`,
    `    -- (arg: the key's name, then chr(31) and the stream that must hold it, if any)
    WHEN 'key' THEN coalesce((m.groups ->> (split_part(c.arg, chr(31), 1) || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = split_part(c.arg, chr(31), 1) AND k.value = c.stream
        AND (split_part(c.arg, chr(31), 2) = '' OR k.stream = split_part(c.arg, chr(31), 2)) OFFSET 0)`,
  ),
  `cl.name IN (SELECT q.arg FROM unnest(p_cond_kind, p_cond_arg) AS q(kind, arg) WHERE q.kind = 'key')`,
  `cl.name IN (SELECT split_part(q.arg, chr(31), 1) FROM unnest(p_cond_kind, p_cond_arg) AS q(kind, arg) WHERE q.kind = 'key')`,
);
