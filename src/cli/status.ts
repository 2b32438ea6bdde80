import type { Command } from 'commander';
import { formatIngestionStatus, readIngestionStatus } from '../ingest/status.js';
import { ingestNamesFromEnv } from '../ingest/stream.js';
import { missingMigrations } from '../db/migrate.js';
import { readStatuses, SHADOW_PREFIX, type ProjectionStatus } from '../projection/checkpoint.js';
import { allProjections } from '../../projections/index.js';
import { runCommand, withPool } from './runtime.js';

const NOT_SET_UP = 'not set up (migrations pending)';

/** A relation or schema that is not there (42P01, 3F000): its migration has not run. */
function isMissingRelation(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === '42P01' || code === '3F000';
}

/** A projection's line in status: its checkpoint, or none yet (`not started`). */
type ProjectionLine = Omit<ProjectionStatus, 'state' | 'updatedAt'> & { state: ProjectionStatus['state'] | 'not started'; updatedAt: Date | null; lag: number };

/**
 * Every projection of this release, by name, with its lag behind `head`: also one that has never
 * run, which has no checkpoint yet (a new database, a restore before the first serve, a projection
 * new in this release), lagging by the whole log; until this session status left such a projection
 * out, its lag invisible. Checkpoints of projections this release does not have apart (`others`).
 */
function ofThisRelease(checkpoints: ProjectionStatus[], head: number): { projections: ProjectionLine[]; others: string[] } {
  const byName = new Map(checkpoints.map((checkpoint) => [checkpoint.name, checkpoint]));
  const projections = [...new Set(allProjections.map((projection) => projection.name))].sort().map((name): ProjectionLine => {
    const checkpoint: Omit<ProjectionLine, 'lag'> = byName.get(name) ?? {
      name, position: 0, state: 'not started', fingerprint: null, error: null, errorPosition: null, errorEventId: null, errorEventType: null, updatedAt: null,
    };
    return { ...checkpoint, lag: Math.max(head - checkpoint.position, 0) };
  });
  return { projections, others: checkpoints.filter((checkpoint) => !projections.some((p) => p.name === checkpoint.name)).map((checkpoint) => checkpoint.name) };
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
          const read = await unlessPending(readStatuses(pool));
          const checkpoints = read ?? [];
          // A rebuild's shadow checkpoints (one running, or left by one killed, which the next run of
          // its group drops) are no projection's: listed apart, not as projections lagging behind.
          const shadows = checkpoints.filter((p) => p.name.startsWith(SHADOW_PREFIX)).map((p) => p.name);
          // None while the checkpoints' table is not set up (migrations pending): not started is not known then.
          const { projections, others } = read ? ofThisRelease(checkpoints.filter((p) => !p.name.startsWith(SHADOW_PREFIX)), head ?? 0) : { projections: [], others: [] };
          const ingestion = await unlessPending(readIngestionStatus(pool, config.natsUrl, ingestNamesFromEnv()));
          if (options.json) {
            process.stdout.write(`${JSON.stringify({ head: head ?? null, pendingMigrations, projections, otherCheckpoints: others, rebuildCheckpoints: shadows, ingestion: ingestion ?? null }, null, 2)}\n`);
            return;
          }
          if (pendingMigrations.length > 0) {
            process.stdout.write(`migrations pending: ${pendingMigrations.join(', ')} (run npx knex migrate:latest)\n`);
          }
          process.stdout.write(`log head: ${head ?? NOT_SET_UP}\n\n`);
          const rows = [['projection', 'checkpoint', 'lag', 'state'], ...projections.map((p) => [p.name, String(p.position), String(p.lag), p.state])];
          const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
          for (const row of rows) process.stdout.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ')}\n`);
          if (others.length > 0) {
            process.stdout.write(`\ncheckpoints of projections this release does not have (another release's): ${others.join(', ')}\n`);
          }
          if (shadows.length > 0) {
            process.stdout.write(`\nrebuild checkpoints (a rebuild running, or left by one killed; the next rebuild-projections drops them): ${shadows.join(', ')}\n`);
          }
          for (const p of projections.filter((p) => p.state === 'failed')) {
            process.stdout.write(`\n${p.name} stopped at position ${p.errorPosition}, event ${p.errorEventId} (${p.errorEventType}):\n  ${p.error}\n`);
          }
          process.stdout.write(`\n${ingestion ? formatIngestionStatus(ingestion, config.natsUrl).join('\n') : `ingestion: ${NOT_SET_UP}`}\n`);
        });
      }),
    );
}
