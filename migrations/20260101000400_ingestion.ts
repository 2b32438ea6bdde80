import type { Knex } from 'knex';

/**
 * NATS ingestion (contract.md, "NATS ingestion").
 *
 * - `rejected_messages`: every message the ingester could not accept (not JSON, invalid event,
 *   broken rule, ...), kept as received: subject, headers, raw body (plus its text when it is
 *   UTF-8), the reason and the time. A message is acked only after its row is committed, so
 *   nothing received is lost. A redelivery of the same message lands on the same row: the key is
 *   its JetStream stream, sequence and stored-at time (sequences start again at 1 if the stream
 *   is ever deleted and created again; the time tells those messages apart).
 * - `ingestion_stats`: running counters per consumer (stream/durable) for `status`: messages
 *   whose event was appended, duplicates (already in the log: redeliveries, producer retries),
 *   rejected messages, and the last stream sequence handled.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE event_store.rejected_messages (
      id              bigserial   NOT NULL,
      subject         text        NOT NULL,
      headers         jsonb       NOT NULL DEFAULT '{}'::jsonb,
      body            bytea       NOT NULL,
      body_text       text,
      reason          text        NOT NULL,
      received_at     timestamptz NOT NULL DEFAULT now(),
      nats_stream     text,
      stream_sequence bigint,
      stored_at       timestamptz,
      event_id        text,
      event_type      text,
      CONSTRAINT rejected_messages_pkey PRIMARY KEY (id),
      CONSTRAINT rejected_messages_delivery_key UNIQUE (nats_stream, stream_sequence, stored_at)
    );
    CREATE INDEX rejected_messages_received_at_idx ON event_store.rejected_messages (received_at);

    CREATE TABLE event_store.ingestion_stats (
      consumer             text        NOT NULL,
      accepted             bigint      NOT NULL DEFAULT 0,
      duplicates           bigint      NOT NULL DEFAULT 0,
      rejected             bigint      NOT NULL DEFAULT 0,
      last_stream_sequence bigint      NOT NULL DEFAULT 0,
      updated_at           timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT ingestion_stats_pkey PRIMARY KEY (consumer)
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE event_store.ingestion_stats; DROP TABLE event_store.rejected_messages');
}
