import { Command } from 'commander';
import { allProjections } from '../../projections/index.js';
import { planRebuild, rebuildGroup } from '../projection/rebuild.js';
import { parsePositive } from './append.js';
import { createProgress } from './progress.js';
import { EXIT, runCommand, stopOnSignals } from './runtime.js';

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
      for (const entry of plan) {
        const head = await log.headPosition();
        const progress = createProgress(`rebuild ${entry.group}`, head, 'events');
        const report = await rebuildGroup({
          databaseUrl: config.databaseUrl,
          log,
          logger,
          projections: allProjections.filter((p) => p.group === entry.group),
          batchSize: options.batchSize,
          signal,
          onProgress: ({ position }) => progress.update(Math.min(position, head)),
        });
        progress.stop();
        process.stdout.write(`rebuilt group ${report.group}: ${report.events} events in ${report.seconds.toFixed(1)} s\n`);
        for (const [table, rows] of Object.entries(report.rows)) process.stdout.write(`  ${table}: ${rows} rows\n`);
      }
    }),
  );

await program.parseAsync();
