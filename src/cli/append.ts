import fs from 'node:fs';
import type { Command } from 'commander';
import { requireMigrated } from '../db/migrate.js';
import { AppendStoppedError, appendNdjson, type AppendReport } from '../transfer/append-ndjson.js';
import { createProgress } from './progress.js';
import { EXIT, parsePositive, printable, runCommand, stopOnSignals } from './runtime.js';

/** The summary line, then each refused line with its number and reason (on stdout: the command's result). */
function printReport(report: AppendReport): void {
  process.stdout.write(`appended ${report.appended}, skipped as duplicates ${report.duplicates}, rejected ${report.rejected.length}\n`);
  for (const rejection of report.rejected) process.stdout.write(`  line ${rejection.line}: ${printable(rejection.reason)}\n`);
}

export function appendCommand(program: Command): void {
  program
    .command('append')
    .description('append the events of an NDJSON file of envelopes ({ id, type, stream, expectedVersion?, data, metadata? }) to the log')
    .argument('<file>', 'NDJSON file, or - for standard input')
    .option('--batch-size <n>', 'lines per append transaction (a refused line is left out, the others of its batch go in)', (v) => parsePositive(v, '--batch-size'), 500)
    .addHelpText('after', '\nExit code 0 when every line was appended (or already there), 1 when some lines were refused (listed with their line numbers), 2 on failure.')
    .action((file: string, options: { batchSize: number }) =>
      runCommand(async ({ config, log, logger }) => {
        await requireMigrated(config.databaseUrl);
        const input = file === '-' ? process.stdin : fs.createReadStream(file);
        // Standard input redirected from a file has a size; a pipe has none (0: unknown).
        const stat = file === '-' ? fs.fstatSync(0) : fs.statSync(file);
        const total = stat.isFile() ? stat.size : 0;
        const progress = createProgress('append', total, 'bytes');
        let report: AppendReport;
        try {
          report = await appendNdjson(log, input, {
            batchSize: options.batchSize,
            signal: stopOnSignals(logger),
            onProgress: ({ bytes, report: r }) => progress.update(bytes, `appended ${r.appended}, duplicates ${r.duplicates}, rejected ${r.rejected.length}`),
          });
        } catch (error) {
          // What went in before the failure is reported too (then the error, by runCommand).
          if (error instanceof AppendStoppedError) {
            progress.stop('failed');
            printReport(error.report);
          }
          throw error;
        }
        progress.stop(report.stoppedAtLine === undefined ? 'done' : 'interrupted');
        logger.info({ appended: report.appended, duplicates: report.duplicates, rejected: report.rejected.length }, 'append finished');
        printReport(report);
        if (report.stoppedAtLine !== undefined) {
          process.stderr.write(`append interrupted: line ${report.stoppedAtLine} and the lines after it were not appended (run it again: what went in counts as duplicates)\n`);
          return EXIT.failed;
        }
        return report.rejected.length > 0 ? EXIT.refused : EXIT.ok;
      }),
    );
}
