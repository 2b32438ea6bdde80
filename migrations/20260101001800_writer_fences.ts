import type { Knex } from 'knex';

/**
 * Fences (fencing tokens, the epochs of Kafka's transactional producers): a writer that takes
 * over a job from another, which may still live (an ingester whose lock's connection was lost
 * while its batch went on), raises the job's fence, and appends with its hold of it; the
 * other's hold is then stale and its appends fail. The advisory lock that hands the job over
 * cannot do this alone: it is held by a connection of its own, and the old owner's other
 * connections go on writing after it is lost.
 *
 * - raise_fence() makes the fence's epoch one more (1 for a new fence) and returns it. Its
 *   UPDATE waits for every transaction that holds the row (hold_fence), so once it returns, each
 *   append of an older epoch has either committed (the new writer reads it) or will fail.
 * - hold_fence() is run by a fenced append in the append's own transaction, after its writes
 *   (append_events() must take the transaction id itself: CS007): it locks the row FOR SHARE,
 *   which a raise waits for until the append commits, and raises CS009 unless the epoch is the
 *   writer's. A raise committed meanwhile is seen (READ COMMITTED: the row is read again once its
 *   lock is granted). FOR SHARE, not FOR KEY SHARE: the raise changes no key, and FOR KEY SHARE
 *   would not hold it back.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE event_store.fences (
      name text PRIMARY KEY,
      epoch bigint NOT NULL CHECK (epoch > 0)
    );

    CREATE FUNCTION event_store.raise_fence(p_name text) RETURNS bigint
    LANGUAGE sql AS $$
      INSERT INTO event_store.fences AS f (name, epoch) VALUES (p_name, 1)
      ON CONFLICT (name) DO UPDATE SET epoch = f.epoch + 1
      RETURNING f.epoch
    $$;

    CREATE FUNCTION event_store.hold_fence(p_name text, p_epoch bigint) RETURNS void
    LANGUAGE plpgsql AS $$
    DECLARE
      v_epoch bigint;
    BEGIN
      SELECT f.epoch INTO v_epoch FROM event_store.fences f WHERE f.name = p_name FOR SHARE;
      IF v_epoch IS NULL THEN
        RAISE EXCEPTION 'fence %: never raised, so no writer holds epoch % of it', p_name, p_epoch
          USING ERRCODE = 'CS009', DETAIL = json_build_object('fence', p_name, 'held', p_epoch, 'current', v_epoch)::text;
      ELSIF v_epoch <> p_epoch THEN
        RAISE EXCEPTION 'fence %: this writer holds epoch %, and the fence is at %: another writer has taken over', p_name, p_epoch, v_epoch
          USING ERRCODE = 'CS009', DETAIL = json_build_object('fence', p_name, 'held', p_epoch, 'current', v_epoch)::text;
      END IF;
    END $$;
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP FUNCTION event_store.hold_fence(text, bigint); DROP FUNCTION event_store.raise_fence(text); DROP TABLE event_store.fences');
}
