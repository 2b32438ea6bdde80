import fs from 'node:fs';
import type { Command } from 'commander';
import { requireMigrated } from '../db/migrate.js';
import { appendNdjson } from '../transfer/append-ndjson.js';
import { createProgress } from './progress.js';
import { EXIT, parsePositive, printable, runCommand, stopOnSignals } from './runtime.js';

export function appendCommand(program: Command): void {
  program
    .command('append')
    .description('append the events of an NDJSON file of envelopes ({ id, type, stream, expectedVersion?, data, metadata? }) to the log')
    .argument('<file>', 'NDJSON file, or - for standard input')
    .option('--batch-size <n>', 'events per atomic append', (v) => parsePositive(v, '--batch-size'), 500)
    .addHelpText('after', '\nExit code 0 when every line was appended (or already there), 1 when some lines were refused (listed with their line numbers), 2 on failure.')
    .action((file: string, options: { batchSize: number }) =>
      runCommand(async ({ config, log, logger }) => {
        await requireMigrated(config.databaseUrl);
        const input = file === '-' ? process.stdin : fs.createReadStream(file);
        // Standard input redirected from a file has a size; a pipe has none (0: unknown).
        const stat = file === '-' ? fs.fstatSync(0) : fs.statSync(file);
        const total = stat.isFile() ? stat.size : 0;
        const progress = createProgress('append', total, 'bytes');
        const report = await appendNdjson(log, input, {
          batchSize: options.batchSize,
          signal: stopOnSignals(logger),
          onProgress: ({ bytes, report: r }) => progress.update(bytes, `appended ${r.appended}, duplicates ${r.duplicates}, rejected ${r.rejected.length}`),
        });
        progress.stop(report.stoppedAtLine === undefined ? 'done' : 'interrupted');
        logger.info({ appended: report.appended, duplicates: report.duplicates, rejected: report.rejected.length }, 'append finished');
        process.stdout.write(`appended ${report.appended}, skipped as duplicates ${report.duplicates}, rejected ${report.rejected.length}\n`);
        for (const rejection of report.rejected) process.stdout.write(`  line ${rejection.line}: ${printable(rejection.reason)}\n`);
        if (report.stoppedAtLine !== undefined) {
          process.stderr.write(`append interrupted: line ${report.stoppedAtLine} and the lines after it were not appended (run it again: what went in counts as duplicates)\n`);
          return EXIT.failed;
        }
        return report.rejected.length > 0 ? EXIT.refused : EXIT.ok;
      }),
    );
}
