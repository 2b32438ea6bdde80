import type { Knex } from 'knex';
import { edit, FAILED_PRECONDITION_V2 } from './20260101000600_cheaper_key_claims.js';

/**
 * failed_precondition(): every key a precondition asks about is probed through the index, one
 * lookup per condition, whatever the statistics say.
 *
 * Its EXISTS subqueries could be planned as a hashed subplan: the planner turns
 * `EXISTS (SELECT 1 FROM keys WHERE name = 'stream' AND value = c.stream)` into
 * `c.stream = ANY (SELECT value FROM keys WHERE name = 'stream')` and builds a hash of every
 * aggregate's stream key on every call. It picks that plan when the statistics of event_store.keys
 * say the table is small (taken while it was, and not refreshed since: autovacuum off or behind),
 * and a plpgsql function keeps it for the session: an append's preconditions then cost time in
 * proportion to the number of aggregates in the log (1.3 ms of a 3.5 ms append of ten package
 * events with 2,100 aggregates; 0.2 ms with the index probes). OFFSET 0 in a subquery keeps
 * PostgreSQL from rewriting an EXISTS into a hashable ANY (the rewrite is only valid without one),
 * so each condition looks its key up on its own. Same results, same errors.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V3}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V2}`);
}

const FAILED_PRECONDITION_V3 = [
  ["SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream)", "SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream OFFSET 0)"],
  ['SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream)', 'SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream OFFSET 0)'],
  ["SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream AND k.parent = c.arg)", "SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream AND k.parent = c.arg OFFSET 0)"],
  ["AND coalesce((m.groups ->> ('stream' || chr(31) || k.value))::int < c.grp, true))", "AND coalesce((m.groups ->> ('stream' || chr(31) || k.value))::int < c.grp, true) OFFSET 0)"],
].reduce((text, [from, to]) => edit(text, from!, to!), FAILED_PRECONDITION_V2);
