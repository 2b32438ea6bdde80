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
import { catchUpTogether, createRunner, type Runner } from './runner.js';
import { readTableDefinitions, type TableDefinition } from './table-definition.js';

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
  /** The groups to rebuild, each the list of its projections. The log is read once for all of them. */
  groups: ProjectionDefinition[][];
  batchSize?: number;
  signal?: AbortSignal;
  onProgress?: (progress: { position: number; events: number; phase: 'fill' | 'swap' }) => void;
  /** Test hook: called at each phase boundary (the crash tests kill the process there). */
  onPhase?: (phase: 'filled' | 'finished' | 'swapping') => Promise<void> | void;
}

export interface RebuildReport {
  group: string;
  position: number;
  rows: Record<string, number>;
  seconds: number;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
const schemaNames = (group: string) => {
  const safe = group.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
  return { shadow: `rebuild_${safe}`, old: `rebuild_old_${safe}` };
};

interface GroupRebuild {
  group: string;
  projections: ProjectionDefinition[];
  tables: string[];
  names: string[];
  shadowNames: string[];
  shadow: string;
  old: string;
  definitions: TableDefinition[];
  runner: Runner;
}

export async function rebuildGroups(options: RebuildOptions): Promise<RebuildReport[]> {
  const { logger } = options;
  const started = performance.now();
  const admin = new pg.Client({ connectionString: options.databaseUrl });
  await admin.connect();
  const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 3 });
  const interrupted = () => {
    if (options.signal?.aborted) throw new Error('rebuild interrupted: the live tables, checkpoints and fingerprints are unchanged');
  };
  try {
    const rebuilds: GroupRebuild[] = [];
    for (const projections of options.groups) {
      const group = projections[0]!.group;
      const { rows: [lock] } = await admin.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [REBUILD_LOCK_CLASS, group]);
      if (!lock!.ok) throw new RebuildInProgressError(group);
      const names = projections.map((p) => p.name);
      const tables = projections.flatMap((p) => p.tables);
      const { shadow, old } = schemaNames(group);
      rebuilds.push({
        group, projections, tables, names, shadow, old,
        shadowNames: names.map((name) => `${SHADOW_PREFIX}${name}`),
        definitions: await readTableDefinitions(admin, 'public', tables),
        runner: createRunner({
          log: options.log,
          pool,
          projections,
          logger,
          batchSize: options.batchSize,
          schema: shadow,
          checkpointName: (projection) => `${SHADOW_PREFIX}${projection.name}`,
        }),
      });
    }

    for (const r of rebuilds) {
      // Leftovers of an interrupted run.
      await admin.query(`DROP SCHEMA IF EXISTS ${quote(r.shadow)} CASCADE; DROP SCHEMA IF EXISTS ${quote(r.old)} CASCADE`);
      await admin.query('DELETE FROM event_store.projections WHERE name = ANY($1)', [r.shadowNames]);
      // Shadow tables: columns, defaults, keys and checks now; foreign keys and indexes after the load.
      await inTransaction(admin, r.shadow, async () => {
        await admin.query(`CREATE SCHEMA ${quote(r.shadow)}`);
        for (const d of r.definitions) for (const statement of [...d.sequences, d.create, ...d.ownership]) await admin.query(statement);
      });
    }

    const runners = rebuilds.map((r) => r.runner);
    const feed = { batchSize: options.batchSize, signal: options.signal, onBatch: ({ position, events }: { position: number; events: number }) => options.onProgress?.({ position, events, phase: 'fill' as const }) };
    let position = await catchUpTogether(options.log, runners, feed);
    interrupted();
    await options.onPhase?.('filled');

    for (const r of rebuilds) {
      await inTransaction(admin, r.shadow, async () => {
        for (const d of r.definitions) for (const statement of d.finish) await admin.query(statement);
      });
    }
    await options.onPhase?.('finished');

    // Events appended during the load and the index build.
    position = Math.max(position, await catchUpTogether(options.log, runners, feed));
    interrupted();
    await options.onPhase?.('swapping');

    const reports: RebuildReport[] = [];
    for (const r of rebuilds) {
      reports.push({ group: r.group, position, rows: await swap(admin, r), seconds: (performance.now() - started) / 1000 });
      options.onProgress?.({ position, events: 0, phase: 'swap' });
      logger.info(reports[reports.length - 1], 'rebuilt');
    }
    return reports;
  } catch (error) {
    await admin.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    await admin.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await admin.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }
}

/** Rebuilds one group (see rebuildGroups). */
export async function rebuildGroup(options: Omit<RebuildOptions, 'groups'> & { projections: ProjectionDefinition[] }): Promise<RebuildReport> {
  const [report] = await rebuildGroups({ ...options, groups: [options.projections] });
  return report!;
}

async function inTransaction(client: pg.Client, searchPath: string, work: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  await client.query(`SET LOCAL search_path TO ${quote(searchPath)}`);
  await work();
  await client.query('COMMIT');
}

/**
 * Swaps a group's shadow tables in: one transaction moves the live tables out and the shadow ones
 * in (catalog changes only), and hands the shadow checkpoints and the new fingerprints to the live
 * projections. Returns the row counts of the new tables.
 */
async function swap(admin: pg.Client, r: GroupRebuild): Promise<Record<string, number>> {
  const rows: Record<string, number> = {};
  for (const table of r.tables) {
    const { rows: [count] } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM ${quote(r.shadow)}.${quote(table)}`);
    rows[table] = Number(count!.n);
  }
  const fingerprints = new Map<string, string>();
  for (const projection of r.projections) fingerprints.set(projection.name, await fingerprintOf(admin, projection, 'public'));

  await admin.query('BEGIN');
  // The checkpoint rows first, as every runner batch does: a live serve's batch finishes or waits.
  await admin.query('SELECT name FROM event_store.projections WHERE name = ANY($1) ORDER BY name FOR UPDATE', [[...r.names, ...r.shadowNames]]);
  await admin.query(`CREATE SCHEMA ${quote(r.old)}`);
  for (const table of r.tables) await admin.query(`ALTER TABLE public.${quote(table)} SET SCHEMA ${quote(r.old)}`);
  for (const table of r.tables) await admin.query(`ALTER TABLE ${quote(r.shadow)}.${quote(table)} SET SCHEMA public`);
  for (const projection of r.projections) {
    await admin.query(
      `INSERT INTO event_store.projections (name, position, fingerprint, state)
       SELECT $1, s.position, $3, s.state FROM event_store.projections s WHERE s.name = $2
       ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state,
         error = NULL, error_position = NULL, error_event_id = NULL, error_event_type = NULL, updated_at = now()`,
      [projection.name, `${SHADOW_PREFIX}${projection.name}`, fingerprints.get(projection.name)],
    );
  }
  await admin.query('DELETE FROM event_store.projections WHERE name = ANY($1)', [r.shadowNames]);
  await admin.query('COMMIT');
  await admin.query(`DROP SCHEMA ${quote(r.old)} CASCADE; DROP SCHEMA ${quote(r.shadow)} CASCADE`);
  return rows;
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
