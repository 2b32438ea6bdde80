/**
 * The library example of README.md ("Library"), quoted there verbatim from the first `import`
 * line down, and run by test/log-postgres.test.ts against a migrated database of its own.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import {
  allProjections,
  appendEnvelopes,
  createLogger,
  createPostgresEventLog,
  createProjectionService,
  DuplicateKeyError,
  validateEnvelope,
  WrongExpectedVersionError,
} from 'conda-store-events';

const databaseUrl = process.env.DATABASE_URL ?? 'postgres://127.0.0.1:5432/conda_store_events';
const log = createPostgresEventLog({ connectionString: databaseUrl });
try {
  // New aggregates get their ids from the log's allocator, one sequence per kind.
  const [namespaceId, otherId] = await log.allocateIds('namespace', 2);
  const stream = `namespace-${namespaceId}`;

  // validateEnvelope checks an event against the catalogue (EventValidationError names the field);
  // appendEnvelopes appends through the append-time rules, as `serve` does what it ingests.
  await appendEnvelopes(log, [
    validateEnvelope({ id: randomUUID(), type: 'NamespaceCreated', stream, data: { namespace_id: namespaceId, name: 'analytics' } }),
  ]);

  // A unique key of conda-store's tables is claimed with the event that introduces it.
  try {
    await appendEnvelopes(log, [
      validateEnvelope({ id: randomUUID(), type: 'NamespaceCreated', stream: `namespace-${otherId}`, data: { namespace_id: otherId, name: 'analytics' } }),
    ]);
  } catch (error) {
    if (!(error instanceof DuplicateKeyError)) throw error;
    console.log(`refused: ${error.message}`);
  }

  // Optimistic concurrency: an event may say which version of its stream it was decided on.
  const update = (owner: string) =>
    validateEnvelope({ id: randomUUID(), type: 'NamespaceMetadataUpdated', stream, expectedVersion: 0, data: { namespace_id: namespaceId, metadata_: { owner } } });
  await appendEnvelopes(log, [update('data-team')]);
  try {
    await appendEnvelopes(log, [update('someone else')]); // decided on version 0 too: too late
  } catch (error) {
    if (!(error instanceof WrongExpectedVersionError)) throw error;
    console.log(`refused: ${error.message}`);
  }

  for (const event of await log.readStream(stream)) console.log(`${stream} v${event.streamVersion}: ${event.type} at position ${event.globalPosition}`);

  // The tables: every projection brought up to the head of the log, then conda-store's own rows.
  const projections = createProjectionService({ databaseUrl, log, logger: createLogger('warn'), projections: allProjections });
  try {
    await projections.catchUp();
  } finally {
    await projections.close();
  }
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query('SELECT id, name, metadata_ FROM namespace WHERE id = $1', [namespaceId]);
    console.log(`namespace row: ${JSON.stringify(rows[0])}`);
  } finally {
    await client.end();
  }
} finally {
  await log.close();
}
