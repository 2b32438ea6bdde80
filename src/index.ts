/**
 * conda-store-events, the library (contract.md, "Package and commands"): the event log, the
 * event catalogue (types, validators, JSON Schemas), the append-time rules, the projection
 * service, and the NATS producer client and ingester.
 *
 *   import { connect } from 'nats';
 *   import { publishEvent } from 'conda-store-events';
 *   const nc = await connect({ servers: 'nats://127.0.0.1:4222' });
 *   await publishEvent(nc, { type: 'NamespaceCreated', data: { namespace_id: 7, name: 'data-science' } });
 */

// The event log: factories, the interface and its types, the typed refusals. (ExpectedVersion,
// the same type in both, comes from the catalogue below.)
export * from './log/errors.js';
export { createPostgresEventLog, openEventLog } from './log/index.js';
export type { AppendedEvent, AppendOptions, AppendRequest, EventInput, EventLog, Fence, KeyClaim, KeyRelease, Precondition, ReadAllOptions, ReadStreamOptions, RecordedEvent, SubscribeOptions } from './log/types.js';

// The event catalogue: one schema per event type, its TypeScript type, validator and JSON Schema.
export * from './catalogue/index.js';

// Append-time rules, and appending validated envelopes through them.
export { decide, isStaleDecision, keyChanges, RuleViolationError, toAppendRequest, type Decision } from './decide/index.js';
export { appendBatch, appendEnvelopes, type BatchOutcome } from './decide/append-batch.js';

// Projections: definitions, the service that keeps them current, conda-store's projections.
export { createProjectionService, type ProjectionServiceOptions } from './projection/service.js';
export { changesFor, defineProjection, handledTypes, type Handler, type Handlers, type ProjectedEvent, type ProjectionDefinition, type Row, type RowChange } from './projection/definition.js';
export { allProjections, condaStoreProjections, projectionsByName } from '../projections/index.js';

// NATS: the producer client, id allocation, and the ingester `serve` runs.
export { NoStreamError, publishEvent, publishEvents, toEnvelope, type EventToPublish, type PublishedEvent, type PublishEventsOptions, type PublishFailure, type PublishOptions } from './ingest/publish.js';
export { JetStreamPublishError, PublishNotAcknowledgedError } from './ingest/jetstream-acks.js';
export { answerIdsRequest, MAX_IDS_PER_REQUEST, requestIds, startIdsResponder, type IdsReply } from './ingest/ids-responder.js';
export { createIngester, parseMessage, type IngestBatchReport, type Ingester, type IngesterOptions, type RejectedMessage } from './ingest/consumer.js';
export { runIngestion, type IngestionServiceOptions } from './ingest/service.js';
export { readIngestionStatus, type IngestionStatus } from './ingest/status.js';
export {
  connectNats,
  consumerConfig,
  DEFAULT_INGEST_NAMES,
  ensureConsumer,
  ensureIngestion,
  ensureStream,
  eventSubject,
  eventsWildcard,
  idsSubject,
  ingestNamesFromEnv,
  resolveNames,
  type ConsumerSettings,
  type IngestNames,
} from './ingest/stream.js';

// Configuration and logging, as the commands use them.
export { loadConfig, type Config } from './config.js';
export { createLogger, type Logger } from './logger.js';
