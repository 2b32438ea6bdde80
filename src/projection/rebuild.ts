/**
 * Blue/green rebuild of a projection group: fill shadow tables in a schema of their own from the
 * log, add foreign keys and indexes after the load, then swap them in atomically with the
 * checkpoints and fingerprints, and drop the old tables.
 *
 * - Readers see the old tables, complete, until the swap commits, and the new ones after: the swap
 *   is `ALTER TABLE ... SET SCHEMA` (catalog only) of every table in one transaction.
 * - Checkpoints travel with the tables: the live checkpoints take the shadow's positions, so events
 *   appended after the shadow's last batch are applied to the new tables by `serve` (or the next
 *   catch-up), and none twice: a running `serve` locks the same checkpoint rows per batch.
 * - A crash or Ctrl-C at any point before the swap commits leaves the live tables, checkpoints and
 *   fingerprints as they were; the next run drops the leftover shadow schema and checkpoints.
 * - One rebuild per group at a time (an advisory lock); a second one is refused.
 * Projections that share foreign keys (a group) are rebuilt together.
 */
import pg from 'pg';
import type { EventLog } from '../log/types.js';
import type { Logger } from '../logger.js';
import type { ProjectionDefinition } from './definition.js';
import { fingerprintChange, fingerprintOf } from './fingerprint.js';
import { createRunner } from './runner.js';
import { readTableDefinitions } from './table-definition.js';

const REBUILD_LOCK_CLASS = 7405;
const SHADOW_PREFIX = 'rebuild:';

export class RebuildInProgressError extends Error {
  override name = 'RebuildInProgressError';
  constructor(readonly group: string) {
    super(`a rebuild of projection group "${group}" is already running in another process`);
  }
}

export interface RebuildOptions {
  databaseUrl: string;
  log: EventLog;
  logger: Logger;
  /** The projections of one group. */
  projections: ProjectionDefinition[];
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { position: number; events: number; phase: 'fill' | 'finish' | 'swap' }) => void;
  /** Test hook: called at each phase boundary (the crash tests kill the process there). */
  onPhase?: (phase: 'filled' | 'finished' | 'swapping') => Promise<void> | void;
}

export interface RebuildReport {
  group: string;
  events: number;
  position: number;
  rows: Record<string, number>;
  seconds: number;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
const schemaNames = (group: string) => {
  const safe = group.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
  return { shadow: `rebuild_${safe}`, old: `rebuild_old_${safe}` };
};

export async function rebuildGroup(options: RebuildOptions): Promise<RebuildReport> {
  const { projections, logger } = options;
  const group = projections[0]!.group;
  const tables = projections.flatMap((p) => p.tables);
  const names = projections.map((p) => p.name);
  const shadowNames = names.map((name) => `${SHADOW_PREFIX}${name}`);
  const { shadow, old } = schemaNames(group);
  const started = performance.now();

  const admin = new pg.Client({ connectionString: options.databaseUrl });
  await admin.connect();
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 3 });
  try {
    const { rows: [lock] } = await admin.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [REBUILD_LOCK_CLASS, group]);
    if (!lock!.ok) throw new RebuildInProgressError(group);

    // Leftovers of an interrupted run.
    await admin.query(`DROP SCHEMA IF EXISTS ${quote(shadow)} CASCADE; DROP SCHEMA IF EXISTS ${quote(old)} CASCADE`);
    await admin.query('DELETE FROM event_store.projections WHERE name = ANY($1)', [shadowNames]);

    // Shadow tables: columns, defaults, keys and checks now; foreign keys and indexes after the load.
    const definitions = await readTableDefinitions(admin, 'public', tables);
    await admin.query('BEGIN');
    await admin.query(`CREATE SCHEMA ${quote(shadow)}`);
    await admin.query(`SET LOCAL search_path TO ${quote(shadow)}`);
    for (const definition of definitions) {
      for (const statement of [...definition.sequences, definition.create, ...definition.ownership]) await admin.query(statement);
    }
    await admin.query('COMMIT');

    const runner = createRunner({
      log: options.log,
      pool,
      projections,
      logger,
      batchSize: options.batchSize,
      schema: shadow,
      checkpointName: (projection) => `${SHADOW_PREFIX}${projection.name}`,
      onBatch: ({ position, events }) => options.onProgress?.({ position, events, phase: 'fill' }),
    });
    let position = await runner.catchUp(options.signal);
    if (options.signal?.aborted) throw new Error('rebuild interrupted');
    await options.onPhase?.('filled');

    await admin.query('BEGIN');
    await admin.query(`SET LOCAL search_path TO ${quote(shadow)}`);
    for (const definition of definitions) for (const statement of definition.finish) await admin.query(statement);
    await admin.query('COMMIT');
    await options.onPhase?.('finished');

    // Events appended during the load and the index build.
    position = Math.max(position, await runner.catchUp(options.signal));
    if (options.signal?.aborted) throw new Error('rebuild interrupted');
    await options.onPhase?.('swapping');

    const rows: Record<string, number> = {};
    for (const table of tables) {
      const { rows: [count] } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${quote(shadow)}.${quote(table)}`);
      rows[table] = Number(count!.n);
    }

    const fingerprints = new Map<string, string>();
    for (const projection of projections) fingerprints.set(projection.name, await fingerprintOf(admin, projection, 'public'));

    await admin.query('BEGIN');
    // The checkpoint rows first, as every runner batch does: a live serve's batch finishes or waits.
    await admin.query('SELECT name FROM event_store.projections WHERE name = ANY($1) ORDER BY name FOR UPDATE', [[...names, ...shadowNames]]);
    await admin.query(`CREATE SCHEMA ${quote(old)}`);
    for (const table of tables) await admin.query(`ALTER TABLE public.${quote(table)} SET SCHEMA ${quote(old)}`);
    for (const table of tables) await admin.query(`ALTER TABLE ${quote(shadow)}.${quote(table)} SET SCHEMA public`);
    for (const projection of projections) {
      await admin.query(
        `INSERT INTO event_store.projections (name, position, fingerprint, state)
         SELECT $1, s.position, $3, s.state FROM event_store.projections s WHERE s.name = $2
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state,
           error = NULL, error_position = NULL, error_event_id = NULL, error_event_type = NULL, updated_at = now()`,
        [projection.name, `${SHADOW_PREFIX}${projection.name}`, fingerprints.get(projection.name)],
      );
    }
    await admin.query('DELETE FROM event_store.projections WHERE name = ANY($1)', [shadowNames]);
    await admin.query('COMMIT');
    options.onProgress?.({ position, events: 0, phase: 'swap' });

    await admin.query(`DROP SCHEMA ${quote(old)} CASCADE; DROP SCHEMA ${quote(shadow)} CASCADE`);
    const seconds = (performance.now() - started) / 1000;
    logger.info({ group, position, rows, seconds }, 'rebuilt');
    return { group, events: position, position, rows, seconds };
  } catch (error) {
    await admin.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await admin.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await admin.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

export interface RebuildPlanEntry {
  group: string;
  projections: { name: string; reason: string }[];
}

/**
 * Which groups to rebuild: the named projections' groups, every group (`all`), or, with neither,
 * the groups with a projection whose fingerprint changed since it was built, and why.
 */
export async function planRebuild(databaseUrl: string, projections: ProjectionDefinition[], names: string[], all: boolean): Promise<RebuildPlanEntry[]> {
  const unknown = names.filter((name) => !projections.some((p) => p.name === name));
  if (unknown.length) throw new Error(`unknown projection(s): ${unknown.join(', ')} (known: ${projections.map((p) => p.name).join(', ')})`);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; fingerprint: string | null }>('SELECT name, fingerprint FROM event_store.projections');
    const recorded = new Map(rows.map((row) => [row.name, row.fingerprint]));
    const reasons = new Map<string, string>();
    for (const projection of projections) {
      if (all) reasons.set(projection.name, 'all projections asked for');
      else if (names.length) {
        if (names.includes(projection.name)) reasons.set(projection.name, 'named on the command line');
      } else {
        const change = fingerprintChange(recorded.get(projection.name) ?? null, await fingerprintOf(client, projection));
        if (change) reasons.set(projection.name, change);
      }
    }
    const groups = new Map<string, RebuildPlanEntry>();
    for (const projection of projections) {
      const changedInGroup = projections.filter((p) => p.group === projection.group && reasons.has(p.name)).map((p) => p.name);
      if (!changedInGroup.length) continue;
      const entry = groups.get(projection.group) ?? { group: projection.group, projections: [] };
      entry.projections.push({ name: projection.name, reason: reasons.get(projection.name) ?? `shares foreign keys with ${changedInGroup.join(', ')}` });
      groups.set(projection.group, entry);
    }
    return [...groups.values()];
  } finally {
    await client.end();
  }
}
