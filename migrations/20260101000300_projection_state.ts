import type { Knex } from 'knex';

/**
 * Where each projection stands: its checkpoint (last applied global position, written in the same
 * transaction as its row changes), the fingerprint of the definition it was built with, and,
 * when it stopped on an event it could not apply, that event and the error.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE event_store.projections (
      name             text        NOT NULL,
      position         bigint      NOT NULL DEFAULT 0,
      fingerprint      text,
      state            text        NOT NULL DEFAULT 'running',
      error            text,
      error_position   bigint,
      error_event_id   uuid,
      error_event_type text,
      updated_at       timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT projections_pkey PRIMARY KEY (name),
      CONSTRAINT projections_state_check CHECK (state IN ('running', 'failed'))
    )
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE event_store.projections');
}
