import type { Knex } from 'knex';

/**
 * `ingestion_stats.stream_created`: when the JetStream stream whose sequence `last_stream_sequence`
 * is was created. A stream deleted and created again numbers its messages from 1 again; the
 * counters kept the greatest sequence ever written (several processes write them, and an older
 * owner's late write must not move the figure back), so `status` showed the old stream's last
 * sequence until the new one passed it. A sequence of a newer stream now replaces it; within one
 * stream, the greatest still wins. Rows written before this migration (and by older releases)
 * have none, and go on as before.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE event_store.ingestion_stats ADD COLUMN stream_created timestamptz');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE event_store.ingestion_stats DROP COLUMN stream_created');
}
