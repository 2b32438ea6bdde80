/** The envelope a producer sends (contract.md, "NATS ingestion" and "The event log"). */
import { Type, type Static } from '@sinclair/typebox';
import { JsonObject, MAX_INT4, NO_NUL_KEYS, StorableJsonValue, Text, Uuid } from './common.js';
import { EVENT_TYPES, type EventData, type EventType } from './events.js';
import { currentSchemaVersion } from './upcast.js';

export const ExpectedVersionSchema = Type.Union(
  [
    // A larger version could never match: stream versions are int4, and the log refuses it
    // (MAX_STREAM_VERSION, src/log/append-requests.ts).
    Type.Integer({ minimum: 0, maximum: MAX_INT4, description: '0-based version of the last event in the stream' }),
    Type.Literal('no_stream'),
    Type.Literal('stream_exists'),
    Type.Literal('any'),
  ],
  { description: 'optimistic concurrency check; no_stream for the first event of a stream' },
);
export type ExpectedVersion = Static<typeof ExpectedVersionSchema>;

/**
 * The highest schema_version of any event type today: a producer in another language that checks
 * envelope.json is refused a version no type has yet (validateEnvelope checks each type's own).
 */
const LATEST_SCHEMA_VERSION = Math.max(...EVENT_TYPES.map(currentSchemaVersion));

/** Free-form, but the recognised keys have fixed types; stored as jsonb, as data is (common.ts, "JSON fields"). */
export const MetadataSchema = Type.Object(
  {
    schema_version: Type.Optional(
      Type.Integer({ minimum: 1, maximum: LATEST_SCHEMA_VERSION, description: 'version of the event type the data follows; default 1' }),
    ),
    correlation_id: Type.Optional(Text()),
    causation_id: Type.Optional(Text()),
    producer: Type.Optional(Text({ description: 'service name' })),
    user: Type.Optional(Text({ description: 'who caused the event' })),
  },
  { description: 'free-form; the keys listed here are recognised and typed', ...NO_NUL_KEYS, additionalProperties: StorableJsonValue() },
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
