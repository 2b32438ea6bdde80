/**
 * The event catalogue (events.md): for every event type, one TypeBox schema from which come its
 * TypeScript type, its compiled validator and its JSON Schema (schemas/, `npm run schemas`).
 * Depends on nothing else in the project.
 */
export {
  catalogue,
  definitionOf,
  EVENT_TYPES,
  isEventType,
  streamOf,
  type CatalogueEvent,
  type EventData,
  type EventDefinition,
  type EventType,
} from './events.js';
export {
  EnvelopeSchema,
  ExpectedVersionSchema,
  MetadataSchema,
  type Envelope,
  type EnvelopeMetadata,
  type ExpectedVersion,
} from './envelope.js';
export { EventValidationError, streamIssue, unstorable, validateEnvelope, validateEvent, type ValidationIssue } from './validate.js';
export { currentSchemaVersion, upcast, type StoredEvent, type Upcast } from './upcast.js';
export { AGGREGATE_KINDS, ID_KINDS, isIdKind, type AggregateKind, type IdKind } from './kinds.js';
export { idIntroduced } from './ids.js';
export {
  ARTIFACT_TYPES,
  BUILD_KEY_VERSIONS,
  BUILD_STATUSES,
  ROLES,
  type ArtifactType,
  type BuildStatus,
  type Role,
} from './common.js';
export { jsonSchemaFiles } from './json-schema.js';
