import type { Command } from 'commander';
import { allProjections } from '../../projections/index.js';
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
        let finished = false;
        try {
          await service.catchUp(stop);
          // Not caught up if the signal came first: stopped while waiting for a group another
          // process owns, or between batches.
          finished = !stop.aborted;
        } finally {
          progress.stop(finished ? 'done' : 'stopped');
          await service.close();
        }
        if (!finished) throw new Error('catch-up interrupted: the projections keep what was applied; run it again to go on (status shows where each is)');
        // This release's projections only (not a rebuild's shadow checkpoints, nor a projection
        // an earlier release had).
        const names = new Set(allProjections.map((projection) => projection.name));
        const failed = (await withPool(runtime.config.databaseUrl, readStatuses)).filter((p) => p.state === 'failed' && names.has(p.name));
        for (const p of failed) {
          process.stderr.write(`error: projection ${p.name} stopped at position ${p.errorPosition}, event ${p.errorEventId} (${p.errorEventType}): ${p.error}\n`);
        }
        if (failed.length > 0) return EXIT.failed;
        logger.info({ head }, 'caught up');
      }),
    );
}
