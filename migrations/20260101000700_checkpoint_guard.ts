import type { Knex } from 'knex';

/**
 * event_store.expect_checkpoints(): the guard of a projection batch sent in one round trip
 * (src/projection/runner.ts). A live batch used to take two: one to lock the group's checkpoint
 * rows and read them, whose positions decide which events each projection still needs, and one
 * for the row changes, the new checkpoints and COMMIT. A runner that committed the last batch knows
 * what the checkpoints are unless someone else moved them; it now sends everything at once,
 * this guard first: it takes the same row locks, then raises CS101 if any checkpoint is not as the
 * runner says (another owner applied a batch, a rebuild swapped, a projection was reset or
 * resumed). Nothing after it runs; the runner rolls back and takes the two round trips.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(EXPECT_CHECKPOINTS_V1);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION event_store.expect_checkpoints(text[], bigint[], text[])');
}

export const EXPECT_CHECKPOINTS_V1 = `
    CREATE FUNCTION event_store.expect_checkpoints(p_names text[], p_positions bigint[], p_states text[])
    RETURNS void LANGUAGE plpgsql AS $fn$
    DECLARE
      v_moved integer;
    BEGIN
      -- Every row locked, in the order of checkpoint-lock.sql (no deadlock between the two ways).
      PERFORM 1 FROM event_store.projections WHERE name = ANY(p_names) ORDER BY name FOR UPDATE;
      SELECT count(*) INTO v_moved
      FROM unnest(p_names, p_positions, p_states) AS e(name, position, state)
      LEFT JOIN event_store.projections p ON p.name = e.name
      WHERE p.name IS NULL OR p.position <> e.position OR p.state <> e.state;
      IF v_moved > 0 THEN
        RAISE EXCEPTION 'projection checkpoints moved since this runner last saw them' USING ERRCODE = 'CS101';
      END IF;
    END
    $fn$;
  `;
