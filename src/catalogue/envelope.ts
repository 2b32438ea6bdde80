/** The envelope a producer sends (contract.md, "NATS ingestion" and "The event log"). */
import { Type, type Static } from '@sinclair/typebox';
import { JsonObject, Uuid } from './common.js';
import type { EventData, EventType } from './events.js';

export const ExpectedVersionSchema = Type.Union(
  [
    Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: '0-based version of the last event in the stream' }),
    Type.Literal('no_stream'),
    Type.Literal('stream_exists'),
    Type.Literal('any'),
  ],
  { description: 'optimistic concurrency check; no_stream for the first event of a stream' },
);
export type ExpectedVersion = Static<typeof ExpectedVersionSchema>;

/** Free-form, but the recognised keys have fixed types. */
export const MetadataSchema = Type.Object(
  {
    schema_version: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1, description: 'version of the event type the data follows; default 1' }),
    ),
    correlation_id: Type.Optional(Type.String()),
    causation_id: Type.Optional(Type.String()),
    producer: Type.Optional(Type.String({ description: 'service name' })),
    user: Type.Optional(Type.String({ description: 'who caused the event' })),
  },
  { description: 'free-form; the keys listed here are recognised and typed' },
);
export type EnvelopeMetadata = Static<typeof MetadataSchema> & Record<string, unknown>;

/**
 * Unknown envelope fields are refused, like unknown data fields: a misspelt `expected_version`
 * would otherwise silently disable the concurrency check. `metadata` may be null, as absent (a
 * Python producer sends None for what it leaves out; validateEnvelope drops it then);
 * `expectedVersion` may not: a null there says nothing of which check was meant.
 */
export const EnvelopeSchema = Type.Object(
  {
    id: Uuid({ description: 'event id; also the Nats-Msg-Id header; re-sending the same id is idempotent' }),
    type: Type.String({ minLength: 1, description: 'event type name, e.g. BuildScheduled; one schema per type in this directory' }),
    stream: Type.String({ minLength: 1, description: "the event's stream, from its data: e.g. build-42 for data.build_id 42" }),
    expectedVersion: Type.Optional(ExpectedVersionSchema),
    data: JsonObject({ description: 'the event data, per the schema of its type' }),
    metadata: Type.Optional(Type.Union([MetadataSchema, Type.Null()])),
  },
  { additionalProperties: false },
);

interface EnvelopeFields {
  id: string;
  stream: string;
  expectedVersion?: ExpectedVersion;
  metadata?: EnvelopeMetadata;
}

/** An envelope, discriminated by type: narrowing `type` narrows `data`. */
export type Envelope<T extends EventType = EventType> = { [K in T]: EnvelopeFields & { type: K; data: EventData<K> } }[T];
