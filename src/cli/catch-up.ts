import type { Command } from 'commander';
import { requireMigrated } from '../db/migrate.js';
import { createProgress } from './progress.js';
import { parsePositive, projectionServiceOf, runCommand, stopOnSignals } from './runtime.js';

export function catchUpCommand(program: Command): void {
  program
    .command('catch-up')
    .description('apply every pending event to every projection, then exit (batch jobs, tests)')
    .option('--batch-size <n>', 'events per transaction', (v) => parsePositive(v, '--batch-size'), 1000)
    .action((options: { batchSize: number }) =>
      runCommand(async (runtime) => {
        const { log, logger } = runtime;
        await requireMigrated(runtime.config.databaseUrl);
        const head = await log.headPosition();
        const progress = createProgress('catch-up', head, 'position');
        const service = projectionServiceOf(runtime, options.batchSize, ({ position }) => progress.update(Math.min(position, head)));
        const stop = stopOnSignals(logger);
        try {
          await service.catchUp(stop);
        } finally {
          progress.stop();
          await service.close();
        }
        logger.info({ head }, 'caught up');
      }),
    );
}
