import { Command } from 'commander';
import type { Logger } from '../logger.js';
import { allProjections } from '../../projections/index.js';
import { planRebuild, rebuildGroups } from '../projection/rebuild.js';
import { parsePositive } from './append.js';
import { createProgress } from './progress.js';
import { EXIT, runCommand, stopOnSignals } from './runtime.js';

/**
 * Test hook (crash tests): with CSE_REBUILD_PAUSE_AT=filled|finished|swapping the rebuild logs
 * `rebuild paused` at that phase and waits there until it is killed.
 */
function pauseAt(phase: string | undefined, logger: Logger) {
  if (!phase) return undefined;
  return async (reached: string) => {
    if (reached !== phase) return;
    logger.info({ phase }, 'rebuild paused');
    await new Promise(() => undefined);
  };
}

const program = new Command('rebuild-projections')
  .description('rebuild projections from the log into shadow tables, then swap them in atomically')
  .argument('[names...]', 'projections to rebuild (default: those whose definition changed since they were built)')
  .option('--all', 'rebuild every projection')
  .option('--dry-run', 'list what would be rebuilt, and why, without rebuilding')
  .option('--batch-size <n>', 'events per transaction', (v) => parsePositive(v, '--batch-size'), 5000)
  .addHelpText('after', `
Projections that reference each other by foreign key (conda-store's tables) are rebuilt together.
Readers see the old tables until the swap and the new ones after it; Ctrl-C or a crash before the
swap leaves everything as it was. Exit code 0 on success, 2 on failure.`)
  .showHelpAfterError()
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT.failed))
  .action((names: string[], options: { all?: boolean; dryRun?: boolean; batchSize: number }) =>
    runCommand(async ({ config, log, logger }) => {
      const plan = await planRebuild(config.databaseUrl, allProjections, names, options.all ?? false);
      if (plan.length === 0) {
        process.stdout.write('nothing to rebuild: every projection matches its recorded fingerprint\n');
        return;
      }
      for (const entry of plan) {
        process.stdout.write(`${options.dryRun ? 'would rebuild' : 'rebuilding'} group ${entry.group}:\n`);
        for (const p of entry.projections) process.stdout.write(`  ${p.name}: ${p.reason}\n`);
      }
      if (options.dryRun) return;
      const signal = stopOnSignals(logger);
      const head = await log.headPosition();
      const progress = createProgress(`rebuild ${plan.map((entry) => entry.group).join(', ')}`, head, 'events');
      const reports = await rebuildGroups({
        databaseUrl: config.databaseUrl,
        log,
        logger,
        groups: plan.map((entry) => allProjections.filter((p) => p.group === entry.group)),
        batchSize: options.batchSize,
        signal,
        onProgress: ({ position }) => progress.update(Math.min(position, head)),
        onPhase: pauseAt(process.env.CSE_REBUILD_PAUSE_AT, logger),
      });
      progress.stop();
      for (const report of reports) {
        process.stdout.write(`rebuilt group ${report.group}: up to position ${report.position} in ${report.seconds.toFixed(1)} s\n`);
        for (const [table, rows] of Object.entries(report.rows)) process.stdout.write(`  ${table}: ${rows} rows\n`);
      }
    }),
  );

await program.parseAsync();
