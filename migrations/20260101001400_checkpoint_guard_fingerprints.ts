import type { Knex } from 'knex';
import { edit } from './20260101000600_cheaper_key_claims.js';
import { EXPECT_CHECKPOINTS_V1 } from './20260101000700_checkpoint_guard.js';

/**
 * event_store.expect_checkpoints() with the fingerprints too: a batch's guard (src/projection/
 * runner.ts) raises CS101 when a checkpoint's recorded fingerprint is not the one the runner last
 * saw, as it does for a position or a state. A rebuild's swap records new fingerprints and may
 * leave a position where it was, so a runner applied its next batches into the swapped-in tables
 * without looking at them again; a runner of an older release (a rolling upgrade) then went on
 * applying its older handlers to tables a newer release had rebuilt. After CS101 the runner locks
 * the rows, reads the fingerprints and stops when a newer release built them. An overload: the
 * three-argument guard stays for the releases that call it.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(EXPECT_CHECKPOINTS_V2);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION event_store.expect_checkpoints(text[], bigint[], text[], text[])');
}

const EXPECT_CHECKPOINTS_V2 = [
  [
    'expect_checkpoints(p_names text[], p_positions bigint[], p_states text[])',
    'expect_checkpoints(p_names text[], p_positions bigint[], p_states text[], p_fingerprints text[])',
  ],
  ['unnest(p_names, p_positions, p_states) AS e(name, position, state)', 'unnest(p_names, p_positions, p_states, p_fingerprints) AS e(name, position, state, fingerprint)'],
  ['OR p.state <> e.state;', 'OR p.state <> e.state OR p.fingerprint IS DISTINCT FROM e.fingerprint;'],
].reduce((text, [from, to]) => edit(text, from!, to!), EXPECT_CHECKPOINTS_V1);
