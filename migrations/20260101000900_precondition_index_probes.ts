import type { Knex } from 'knex';
import { edit, FAILED_PRECONDITION_V2 } from './20260101000600_cheaper_key_claims.js';

/**
 * failed_precondition(): every key a precondition asks about is probed through the index, one
 * lookup per condition, whatever the statistics of event_store.keys say (append_events() runs with
 * enable_seqscan off, so the lookup is an index scan).
 *
 * Its EXISTS subqueries could be planned as a hashed subplan: the planner turns
 * `EXISTS (SELECT 1 FROM keys WHERE name = 'stream' AND value = c.stream)` into
 * `c.stream = ANY (SELECT value FROM keys WHERE name = 'stream')` and builds a hash of every
 * aggregate's stream key on every call. It picks that plan when event_store.keys looks small (a new
 * log, no statistics yet, or statistics taken then: autovacuum off or behind), and the plan is
 * kept for the session (this SQL function is inlined into check_preconditions(), a plpgsql
 * function, which caches its plan): an append's preconditions then cost time in proportion to the
 * number of aggregates in the log. Measured on appends of ten package events with 2,100 aggregates:
 * failed_precondition() 1.3 ms of an append statement of 3.5 ms; 0.2 ms with index probes, the
 * append 1.6 to 1.8 ms. PostgreSQL does not attempt that rewrite for a subquery with an OFFSET, so
 * OFFSET 0 in each keeps every condition looking its key up on its own (it relies on the planner's
 * ways: test/log-postgres.test.ts checks the plan). Same results, same errors.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V3}`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`DROP FUNCTION event_store.failed_precondition; ${FAILED_PRECONDITION_V2}`);
}

export const FAILED_PRECONDITION_V3 = [
  ["SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream)", "SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream OFFSET 0)"],
  ['SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream)', 'SELECT 1 FROM event_store.keys k WHERE k.name = c.arg AND k.value = c.stream OFFSET 0)'],
  ["SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream AND k.parent = c.arg)", "SELECT 1 FROM event_store.keys k WHERE k.name = 'stream' AND k.value = c.stream AND k.parent = c.arg OFFSET 0)"],
  ["AND coalesce((m.groups ->> ('stream' || chr(31) || k.value))::int < c.grp, true))", "AND coalesce((m.groups ->> ('stream' || chr(31) || k.value))::int < c.grp, true) OFFSET 0)"],
].reduce((text, [from, to]) => edit(text, from!, to!), FAILED_PRECONDITION_V2);
