import { Command } from 'commander';
import { allProjections } from '../../projections/index.js';
import { planRebuild, rebuildGroups, rebuildLeftovers, rebuildRefusals, type RebuildPhase } from '../projection/rebuild.js';
import { groupsOf } from '../projection/definition.js';
import { createProgress } from './progress.js';
import { requireMigrated } from '../db/migrate.js';
import { EXIT, parsePositive, printable, runCommand, stopOnSignals } from './runtime.js';

/**
 * TEST HOOK, not for operators (test/rebuild.test.ts kills the rebuild at chosen points): with
 * CSE_REBUILD_PAUSE_AT=filled|finished|swapping the rebuild writes the JSON line
 * `{"msg":"rebuild paused","phase":"<phase>"}` on stderr when it reaches that phase and waits
 * there until the process is killed, or until SIGINT/SIGTERM (then it stops as Ctrl-C does).
 * `swapping` pauses inside the swap transaction, holding the live tables' locks.
 */
function pauseAt(phase: string | undefined, signal: AbortSignal) {
  if (!phase) return undefined;
  if (!['filled', 'finished', 'swapping'].includes(phase)) throw new Error(`CSE_REBUILD_PAUSE_AT: unknown phase "${phase}" (filled, finished or swapping)`);
  return async (reached: RebuildPhase) => {
    if (reached !== phase) return;
    process.stderr.write(`${JSON.stringify({ msg: 'rebuild paused', phase })}\n`);
    await new Promise<void>((resolve) => {
      const keepAlive = setInterval(() => undefined, 60_000);
      signal.addEventListener('abort', () => { clearInterval(keepAlive); resolve(); }, { once: true });
    });
  };
}

const count = (n: number) => n.toLocaleString('en-US');

const program = new Command('rebuild-projections')
  .description('rebuild projections from the log into shadow tables, then swap them in atomically')
  .argument('[names...]', 'projections to rebuild (default: those whose definition changed since they were built)')
  .option('--all', 'rebuild every projection')
  .option('--dry-run', 'list what would be rebuilt, and why, and what the rebuild would refuse (then exit 1), without rebuilding')
  .option('--batch-size <n>', 'events per transaction', (v) => parsePositive(v, '--batch-size'), 5000)
  .addHelpText('after', `
Projections that reference each other by foreign key (conda-store's tables) are rebuilt together.
Readers see the old tables until the swap and the new ones after it; Ctrl-C or a crash before the
swap leaves everything as it was. Exit code 0 on success, 2 on failure; 1 when --dry-run finds
what the rebuild would refuse.`)
  .showHelpAfterError()
  .allowExcessArguments(false)
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : EXIT.failed))
  .action((names: string[], options: { all?: boolean; dryRun?: boolean; batchSize: number }) => {
    if (options.all && names.length > 0) program.error(`error: --all rebuilds every projection: name projections (${names.join(', ')}) or give --all, not both`);
    return runCommand(async ({ config, log, logger }) => {
      // The tables are rebuilt in the shape the migrations give them: a pending one first.
      await requireMigrated(config.databaseUrl);
      // What killed rebuilds left of groups no rebuild runs for: dropped (listed on a dry run),
      // whether or not anything is to be rebuilt.
      const groupsOfRelease = [...groupsOf(allProjections).values()];
      for (const { group, leftovers } of await rebuildLeftovers(config.databaseUrl, groupsOfRelease, !options.dryRun)) {
        process.stdout.write(`${options.dryRun ? 'would drop' : 'dropped'} what a killed rebuild of group ${group} left: ${leftovers.join(', ')}\n`);
      }
      const plan = await planRebuild(config.databaseUrl, allProjections, names, options.all ?? false, (name, why) => process.stderr.write(`skipped ${name}: ${why}\n`));
      if (plan.length === 0) {
        process.stdout.write('nothing to rebuild: every projection matches its recorded fingerprint\n');
        return;
      }
      for (const entry of plan) {
        process.stdout.write(`${options.dryRun ? 'would rebuild' : 'rebuilding'} group ${entry.group}:\n`);
        for (const p of entry.projections) process.stdout.write(`  ${p.name}: ${p.reason}\n`);
      }
      if (options.dryRun) {
        // What the rebuild would refuse (exit 1, apart from a dry run that failed): a dry run said
        // it would rebuild a group that the rebuild then refused.
        const refusals = await rebuildRefusals(config.databaseUrl, plan.map((entry) => allProjections.filter((p) => p.group === entry.group)));
        for (const { reason } of refusals) process.stderr.write(`would be refused: ${printable(reason)}\n`);
        return refusals.length > 0 ? EXIT.refused : EXIT.ok;
      }
      const signal = stopOnSignals(logger);
      let total = await log.headPosition();
      const progress = createProgress(`rebuild ${plan.map((entry) => entry.group).join(', ')}`, total, 'events');
      const groups = plan.map((entry) => allProjections.filter((p) => p.group === entry.group));
      const reports = await rebuildGroups({
        databaseUrl: config.databaseUrl,
        log,
        logger,
        groups,
        batchSize: options.batchSize,
        signal,
        onProgress: ({ position, phase, group, detail }) => {
          if (position > total) progress.setTotal((total = position)); // appended meanwhile
          progress.update(position, phase === 'fill' ? '' : `(${phase}${group ? ` ${group}` : ''}${detail ? `: ${detail}` : ''})`);
        },
        onPhase: pauseAt(process.env.CSE_REBUILD_PAUSE_AT, signal),
      });
      progress.stop();
      for (const [i, report] of reports.entries()) {
        const rate = Math.round(report.events / Math.max(report.seconds, 0.001));
        process.stdout.write(
          `rebuilt group ${report.group}: ${count(report.events)} events applied, up to position ${report.position}, in ${report.seconds.toFixed(1)} s (${count(rate)} events/s)\n`,
        );
        for (const projection of groups[i]!) {
          const rows = projection.tables.map((table) => `${table} ${count(report.rows[table] ?? 0)}`).join(', ');
          process.stdout.write(`  ${projection.name}: ${rows} rows\n`);
        }
      }
    });
  });

await program.parseAsync();
