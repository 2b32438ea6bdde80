import type { Knex } from 'knex';

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
  await knex.raw(`
    CREATE FUNCTION event_store.expect_checkpoints(p_names text[], p_positions bigint[], p_states text[], p_fingerprints text[])
    RETURNS void LANGUAGE plpgsql AS $fn$
    DECLARE
      v_moved integer;
    BEGIN
      -- Every row locked, in the order of checkpoint-lock.sql (no deadlock between the two ways).
      PERFORM 1 FROM event_store.projections WHERE name = ANY(p_names) ORDER BY name FOR UPDATE;
      SELECT count(*) INTO v_moved
      FROM unnest(p_names, p_positions, p_states, p_fingerprints) AS e(name, position, state, fingerprint)
      LEFT JOIN event_store.projections p ON p.name = e.name
      WHERE p.name IS NULL OR p.position <> e.position OR p.state <> e.state OR p.fingerprint IS DISTINCT FROM e.fingerprint;
      IF v_moved > 0 THEN
        RAISE EXCEPTION 'projection checkpoints moved since this runner last saw them' USING ERRCODE = 'CS101';
      END IF;
    END
    $fn$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION event_store.expect_checkpoints(text[], bigint[], text[], text[])');
}
