import type { Knex } from 'knex';
import { edit, FAILED_PRECONDITION_V2 } from './20260101000600_cheaper_key_claims.js';

/**
 * A `key` precondition may name the stream that must hold the key (`holder`): an ArtifactDeleted
 * must name an artifact of its own build, a NamespaceRoleMappingRemoved a mapping of its own
 * namespace. The condition travels as before (stream: the key's value; arg: its name), the holder
 * after the name and a unit separator (chr(31)), which no key name holds. Without a holder, a
 * condition means what it meant.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V3}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V2}`);
}

const FAILED_PRECONDITION_V3 = edit(
  edit(
    FAILED_PRECONDITION_V2,
    `    WHEN 'key' THEN coalesce((m.groups ->> (c.arg || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream)`,
    `    -- (arg: the key's name, then chr(31) and the stream that must hold it, if any)
    WHEN 'key' THEN coalesce((m.groups ->> (split_part(c.arg, chr(31), 1) || chr(31) || c.stream))::int < c.grp, true) AND EXISTS (
      SELECT 1 FROM event_store.keys k WHERE k.name = split_part(c.arg, chr(31), 1) AND k.value = c.stream
        AND (split_part(c.arg, chr(31), 2) = '' OR k.stream = split_part(c.arg, chr(31), 2)))`,
  ),
  `cl.name IN (SELECT q.arg FROM unnest(p_cond_kind, p_cond_arg) AS q(kind, arg) WHERE q.kind = 'key')`,
  `cl.name IN (SELECT split_part(q.arg, chr(31), 1) FROM unnest(p_cond_kind, p_cond_arg) AS q(kind, arg) WHERE q.kind = 'key')`,
);
