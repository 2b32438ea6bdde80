import type { Command } from 'commander';
import { migrateLatest, requireMigrated } from '../db/migrate.js';
import { serverSettings, settingsWarnings } from '../db/server-settings.js';
import { runIngestion } from '../ingest/service.js';
import { DEFAULT_FETCH, ingestNamesFromEnv } from '../ingest/stream.js';
import { parsePositive, projectionServiceOf, runCommand, stopOnSignals } from './runtime.js';

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('ingest events from NATS JetStream and keep the projections current from the live log until SIGINT/SIGTERM')
    .option('--migrate', 'run the Knex migrations (knex migrate:latest) first')
    .option('--batch-size <n>', 'events per transaction', (v) => parsePositive(v, '--batch-size'), 1000)
    .option('--no-ingest', 'do not ingest events from NATS (projections only)')
    .option('--ingest-batch-size <n>', 'NATS messages per database transaction at most', (v) => parsePositive(v, '--ingest-batch-size'), DEFAULT_FETCH.maxMessages)
    .addHelpText('after', '\nIngestion: NATS_URL; NATS_STREAM, NATS_SUBJECT_PREFIX, NATS_DURABLE override the contract\'s names (CONDA_STORE_EVENTS, condastore, conda-store-events).')
    .action((options: { migrate?: boolean; batchSize: number; ingest: boolean; ingestBatchSize: number }) =>
      runCommand(async ({ config, log, logger }) => {
        if (options.migrate) {
          const applied = await migrateLatest(config.databaseUrl);
          logger.info({ applied }, 'migrations applied');
        } else {
          await requireMigrated(config.databaseUrl);
        }
        // Advice, not a condition of serving: a failure to read the settings is logged, not thrown.
        await serverSettings(config.databaseUrl).then(
          (settings) => settingsWarnings(settings).forEach((warning) => logger.warn(warning)),
          (error: unknown) => logger.warn({ err: error }, 'could not read the server\'s autovacuum settings'),
        );
        const service = projectionServiceOf({ config, log, logger }, options.batchSize, ({ group, position, events }) =>
          logger.debug({ group, position, events }, 'batch applied'),
        );
        // Clean shutdown: ingestion stops fetching, finishes and acks its in-flight batch and drains
        // NATS; then the projections finish their batch and commit it with its checkpoint.
        const stop = stopOnSignals(logger);
        const failed = new AbortController();
        const projectionStop = new AbortController();
        const ingestStop = AbortSignal.any([stop, failed.signal]);
        const ingesting = options.ingest
          ? runIngestion({ natsUrl: config.natsUrl, log, databaseUrl: config.databaseUrl, logger, names: ingestNamesFromEnv(), batchSize: options.ingestBatchSize, signal: ingestStop })
          : new Promise<void>((resolve) => (ingestStop.aborted ? resolve() : ingestStop.addEventListener('abort', () => resolve(), { once: true })));
        logger.info({ ingest: options.ingest }, 'serving');
        try {
          const results = await Promise.allSettled(
            [ingesting.finally(() => projectionStop.abort()), service.serve(projectionStop.signal)].map((task) =>
              task.catch((error) => {
                failed.abort();
                projectionStop.abort();
                throw error;
              }),
            ),
          );
          for (const result of results) if (result.status === 'rejected') throw result.reason;
        } finally {
          await service.close();
        }
        logger.info('stopped');
      }),
    );
}
