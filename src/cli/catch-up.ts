import type { Command } from 'commander';
import { requireMigrated } from '../db/migrate.js';
import { createProgress } from './progress.js';
import { readStatuses } from '../projection/checkpoint.js';
import { EXIT, parsePositive, projectionServiceOf, runCommand, stopOnSignals, withPool } from './runtime.js';

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
        // Not caught up: stopped while waiting for a group another process owns, or between batches.
        if (stop.aborted) throw new Error('catch-up interrupted: the projections keep what was applied; run it again to go on (status shows where each is)');
        const failed = (await withPool(runtime.config.databaseUrl, readStatuses)).filter((p) => p.state === 'failed');
        for (const p of failed) {
          process.stderr.write(`error: projection ${p.name} stopped at position ${p.errorPosition}, event ${p.errorEventId} (${p.errorEventType}): ${p.error}\n`);
        }
        if (failed.length > 0) return EXIT.failed;
        logger.info({ head }, 'caught up');
      }),
    );
}
