import type { Command } from 'commander';
import { allProjections } from '../../projections/index.js';
import { migrateLatest } from '../db/migrate.js';
import { createProjectionService } from '../projection/service.js';
import { parsePositive } from './append.js';
import { runCommand, stopOnSignals } from './runtime.js';

export function serveCommand(program: Command): void {
  program
    .command('serve')
    .description('keep the projections current from the live log until SIGINT/SIGTERM')
    .option('--migrate', 'run the Knex migrations (knex migrate:latest) first')
    .option('--batch-size <n>', 'events per transaction', (v) => parsePositive(v, '--batch-size'), 1000)
    .action((options: { migrate?: boolean; batchSize: number }) =>
      runCommand(async ({ config, log, logger }) => {
        if (options.migrate) {
          const applied = await migrateLatest(config.databaseUrl);
          logger.info({ applied }, 'migrations applied');
        }
        const service = createProjectionService({
          databaseUrl: config.databaseUrl,
          log,
          logger,
          projections: allProjections,
          batchSize: options.batchSize,
          onBatch: ({ group, position, events }) => logger.debug({ group, position, events }, 'batch applied'),
        });
        // Clean shutdown: the in-flight batch finishes and commits with its checkpoint, then we exit.
        const stop = stopOnSignals(logger);
        logger.info('serving');
        try {
          await service.serve(stop);
        } finally {
          await service.close();
        }
        logger.info('stopped');
      }),
    );
}
