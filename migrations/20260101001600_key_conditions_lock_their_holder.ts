import type { Knex } from 'knex';
import { APPEND_EVENTS } from './20260101000100_event_store.js';
import { edit } from './20260101000600_cheaper_key_claims.js';

/**
 * A `key` precondition that names the stream that must hold the key (its holder) takes that
 * stream's lock, shared, with the others of step 1 of append_events(): an append of the holder
 * that releases the key (a purge, an artifact deleted) and has not committed yet is waited for,
 * and the condition sees the key released. Before, it saw the key as last committed, and both
 * appends went in: an event that needed the key beside the one that released it. (The shipped
 * rules name only the appending stream itself as holder, whose lock is exclusive already; a
 * program that names another stream needed this.) Appends without such a condition lock what
 * they locked.
 *
 * A `key` condition no longer locks its key's value, as if it were a stream: nothing else takes
 * that lock (the claims of a key do not), so it held nothing back, and it took a slot of the
 * server's lock table for every condition: an append of 50,000 conditions ran out of shared
 * memory (max_locks_per_transaction 64), which a batch of solves naming hundreds of package
 * builds each can reach. A condition whose claim is in flight is waited for otherwise
 * (20260101001500).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(APPEND_EVENTS_V2);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(APPEND_EVENTS.replace('CREATE FUNCTION event_store.append_events(', 'CREATE OR REPLACE FUNCTION event_store.append_events('));
}

const APPEND_EVENTS_V2 = edit(
  edit(APPEND_EVENTS, 'CREATE FUNCTION event_store.append_events(', 'CREATE OR REPLACE FUNCTION event_store.append_events('),
  `          UNION ALL SELECT unnest(p_cond_stream), false) s`,
  `          -- The streams conditions read; a 'key' condition's is the key's value, which nothing
          -- else locks: the holder it names, if any, instead (20260101001600).
          UNION ALL SELECT c.stream, false FROM unnest(p_cond_stream, p_cond_kind) AS c(stream, kind) WHERE c.kind <> 'key'
          UNION ALL SELECT split_part(a, chr(31), 2), false FROM unnest(p_cond_arg) AS a WHERE strpos(a, chr(31)) > 0) s`,
);
