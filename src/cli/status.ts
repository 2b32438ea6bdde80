import type { Command } from 'commander';
import { formatIngestionStatus, readIngestionStatus } from '../ingest/status.js';
import { ingestNamesFromEnv } from '../ingest/stream.js';
import { missingMigrations } from '../db/migrate.js';
import { readStatuses, SHADOW_PREFIX } from '../projection/checkpoint.js';
import { runCommand, withPool } from './runtime.js';

const NOT_SET_UP = 'not set up (migrations pending)';

/** A relation or schema that is not there (42P01, 3F000): its migration has not run. */
function isMissingRelation(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === '42P01' || code === '3F000';
}

export function statusCommand(program: Command): void {
  program
    .command('status')
    .description("log head, each projection's checkpoint, lag, state and error; NATS ingestion figures")
    .option('--json', 'print JSON instead of a table')
    .action((options: { json?: boolean }) =>
      runCommand(async ({ config, log }) => {
        const pendingMigrations = await missingMigrations(config.databaseUrl);
        // A part whose tables a pending migration creates is shown as not set up (undefined), not
        // as a failure of status: status is where an operator looks to learn what is missing.
        const unlessPending = <T>(reading: Promise<T>): Promise<T | undefined> =>
          reading.catch((error: unknown) => {
            if (pendingMigrations.length > 0 && isMissingRelation(error)) return undefined;
            throw error;
          });
        const head = await unlessPending(log.headPosition());
        await withPool(config.databaseUrl, async (pool) => {
          const checkpoints = (await unlessPending(readStatuses(pool))) ?? [];
          // A rebuild's shadow checkpoints (one running, or left by one killed, which the next run of
          // its group drops) are no projection's: listed apart, not as projections lagging behind.
          const shadows = checkpoints.filter((p) => p.name.startsWith(SHADOW_PREFIX)).map((p) => p.name);
          const projections = checkpoints.filter((p) => !p.name.startsWith(SHADOW_PREFIX)).map((p) => ({ ...p, lag: Math.max((head ?? 0) - p.position, 0) }));
          const ingestion = await unlessPending(readIngestionStatus(pool, config.natsUrl, ingestNamesFromEnv()));
          if (options.json) {
            process.stdout.write(`${JSON.stringify({ head: head ?? null, pendingMigrations, projections, rebuildCheckpoints: shadows, ingestion: ingestion ?? null }, null, 2)}\n`);
            return;
          }
          if (pendingMigrations.length > 0) {
            process.stdout.write(`migrations pending: ${pendingMigrations.join(', ')} (run npx knex migrate:latest)\n`);
          }
          process.stdout.write(`log head: ${head ?? NOT_SET_UP}\n\n`);
          const rows = [['projection', 'checkpoint', 'lag', 'state'], ...projections.map((p) => [p.name, String(p.position), String(p.lag), p.state])];
          const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
          for (const row of rows) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
          if (shadows.length > 0) {
            process.stdout.write(`\nrebuild checkpoints (a rebuild running, or left by one stopped; its group's next rebuild drops them): ${shadows.join(', ')}\n`);
          }
          for (const p of projections.filter((p) => p.state === 'failed')) {
            process.stdout.write(`\n${p.name} stopped at position ${p.errorPosition}, event ${p.errorEventId} (${p.errorEventType}):\n  ${p.error}\n`);
          }
          process.stdout.write(`\n${ingestion ? formatIngestionStatus(ingestion, config.natsUrl).join('\n') : `ingestion: ${NOT_SET_UP}`}\n`);
        });
      }),
    );
}
