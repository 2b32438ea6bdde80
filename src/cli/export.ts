import type { Command } from 'commander';
import { exportNdjson } from '../transfer/export-ndjson.js';
import { createProgress } from './progress.js';
import { missingMigrations } from '../db/migrate.js';
import { describeError, EXIT, parseNonEmpty, parsePositive, printable, runCommand } from './runtime.js';

export function exportCommand(program: Command): void {
  program
    .command('export')
    .description('write the log as NDJSON envelopes on stdout, in position order (what `append` takes back unchanged)')
    .option('--from <position>', 'first global position to export', (v) => parsePositive(v, '--from'), 1)
    .option('--stream <id>', 'only this stream, e.g. build-42', (v) => parseNonEmpty(v, '--stream'))
    .addHelpText('after', '\nExit code 0 when the events asked for were written (none, past the end of the log or of the stream), 1 when --stream names a stream without any event, 2 on failure.')
    .action((options: { from: number; stream?: string }) =>
      runCommand(async ({ config, log, logger }) => {
        // An older release's log exports as well (the envelope has not changed): only a database
        // without a log is refused, with what to do rather than a missing relation.
        await missingMigrations(config.databaseUrl);
        // A bar on the terminal the NDJSON goes to would be drawn through it.
        const progress = createProgress('export', await log.headPosition(), 'position', { silent: process.stdout.isTTY === true });
        // A reader that has had enough (export | head) ends the export, as for any Unix filter.
        process.stdout.on('error', (error: NodeJS.ErrnoException) => {
          if (error.code !== 'EPIPE') process.stderr.write(`error: ${describeError(error)}\n`);
          process.exit(error.code === 'EPIPE' ? EXIT.ok : EXIT.failed);
        });
        const exported = await exportNdjson(log, process.stdout, {
          from: options.from,
          stream: options.stream,
          onProgress: (_count, position) => progress.update(position),
        });
        progress.stop();
        logger.info({ exported }, 'export finished');
        // A stream that has no event at all is most likely a misspelt name: an empty export with
        // exit code 0 would pass for a backup of it. (None past --from in a stream that has events
        // is an export with nothing new, as for the whole log.)
        if (options.stream !== undefined && exported === 0 && (await log.readStream(options.stream, { maxCount: 1 })).length === 0) {
          process.stderr.write(`export: stream ${printable(options.stream)} has no events (streams are named <kind>-<id>, e.g. build-42)\n`);
          return EXIT.refused;
        }
      }),
    );
}
