/**
 * Blue/green rebuild of projection groups: fill shadow tables in a schema of their own from the
 * log (one read of the log for every group), add foreign keys and indexes after the load, catch
 * up, then swap each group's tables in atomically with its checkpoints and fingerprints, and drop
 * the old tables.
 *
 * - Readers see the old tables, complete, until the swap commits, and the new ones after: the swap
 *   is `ALTER TABLE ... SET SCHEMA` (catalog only) of every table in one transaction, which first
 *   takes ACCESS EXCLUSIVE locks on all the live tables at once, so a query arriving meanwhile
 *   waits and then reads the new table; it never fails or sees a table half-way. When a
 *   long-running reader holds a table, the lock attempt gives up after a moment (lock_timeout,
 *   below the server's deadlock_timeout: the swap yields, never the reader) and is retried.
 * - Checkpoints travel with the tables. The swap transaction locks the live checkpoint rows first,
 *   as every runner batch does (a running `serve` finishes its batch, then waits), and catches the
 *   shadow tables up to the live checkpoints: a `serve` that applied events to the old tables
 *   during the rebuild will not read them again, so the new tables must hold them. The live
 *   checkpoints then take the shadow's positions; what comes after is applied to the new tables
 *   by `serve` (or the next catch-up), and nothing twice.
 * - A crash or Ctrl-C at any point before the swap commits leaves the live tables, checkpoints and
 *   fingerprints as they were; an error or Ctrl-C drops the shadow tables on the way out, and the
 *   next run drops what a crash left (the shadow schema and checkpoints).
 * - One rebuild per group at a time (an advisory lock); a second one is refused.
 * - The shadow tables get the live tables' definitions (table-definition.ts): the same columns,
 *   constraint and index names, sequences, owner and grants. Foreign keys that cascade are there
 *   during the load (a delete must cascade as it does live); the others are added after it.
 * Projections that share foreign keys (a group) are rebuilt together; a foreign key from a table
 * outside the group into it would be lost in the swap, so such a rebuild is refused.
 */
import pg from 'pg';
import { createPool, keepingOptions, LONG_LIVED_CONNECTION, READ_COMMITTED } from '../db/pool.js';
import { turnOffTimeouts } from '../db/session-timeouts.js';
import { withClient } from '../db/with-client.js';
import type { EventLog } from '../log/types.js';
import type { Logger } from '../logger.js';
import { declaredUpsertKeys, keySignature, type ProjectionDefinition } from './definition.js';
import { deleteCheckpoints, ensureCheckpoints, lockCheckpoints, SHADOW_PREFIX } from './checkpoint.js';
import { fingerprintChange, fingerprintOf, fingerprintVersion } from './fingerprint.js';
import { catchUpTogether, createRunner, type Runner } from './runner.js';
import { logUpTo } from '../log/up-to.js';
import { inTablespace, readTableDefinitions, type TableDefinition } from './table-definition.js';
import { quoteIdent as quote, sqlFile, toNumber } from '../log/postgres/sql.js';

export const REBUILD_LOCK_CLASS = 7405;
const DEPENDENTS = sqlFile(import.meta.url, 'rebuild-dependents.sql');
const OTHER_OWNERS = sqlFile(import.meta.url, 'other-owners.sql');

/** Swap attempts when readers hold the live tables, and how long each waits for them (grows to the max). */
const SWAP_ATTEMPTS = 30;
const SWAP_LOCK_TIMEOUT_MS = { first: 200, max: 800 };

/** A rebuild refused for what the database holds (a view on a group table, a rebuild running...): nothing was changed. */
export class RebuildRefusedError extends Error {
  override name = 'RebuildRefusedError';
}

export class RebuildInProgressError extends RebuildRefusedError {
  override name = 'RebuildInProgressError';
  constructor(readonly group: string) {
    super(`a rebuild of projection group "${group}" is already running in another process`);
  }
}

export type RebuildPhase = 'filled' | 'finished' | 'swapping';

export interface RebuildOptions {
  databaseUrl: string;
  log: EventLog;
  logger: Logger;
  /** The groups to rebuild, each the list of its projections. The log is read once for all of them. */
  groups: ProjectionDefinition[][];
  batchSize?: number;
  signal?: AbortSignal;
  /**
   * After each batch: the position reached and the events applied so far; during the keys and
   * indexes added after the load (`indexes`, minutes on a large log), after each of them, with
   * how many are done (`detail`).
   */
  onProgress?: (progress: { position: number; events: number; phase: 'fill' | 'indexes' | 'catch-up' | 'swap'; group?: string; detail?: string }) => void;
  /**
   * Test hook, called at each phase boundary: `filled` (the log is loaded), `finished` (foreign
   * keys and indexes added, before the catch-up), `swapping` (once per group, inside the swap
   * transaction: the tables moved and the checkpoints written, just before COMMIT). The crash
   * tests kill the process there; the write tests append events there.
   */
  onPhase?: (phase: RebuildPhase) => Promise<void> | void;
}

export interface RebuildReport {
  group: string;
  /** The log position the new tables were built to (the live checkpoints took it). */
  position: number;
  /** Events of the group's types applied to its shadow tables (the log is read once for every group of the run). */
  events: number;
  /** Rows of each new table, counted once every group of the run is swapped in. */
  rows: Record<string, number>;
  /** From the start of the run to this group's swap. */
  seconds: number;
}

const schemaNames = (group: string) => {
  const safe = group.replace(/[^a-z0-9_]/gi, '_').toLowerCase();
  return { shadow: `rebuild_${safe}`, old: `rebuild_old_${safe}` };
};

/** PostgreSQL's longest name, in bytes: a longer one is cut to it. */
const NAME_BYTES = 63;

/**
 * Refuses groups whose rebuild schemas would be the same (`conda-store` and `conda_store`, or two
 * long names alike in their first 63 bytes): the rebuild of one, or the drop of its leftovers,
 * would drop the other's shadow tables while that one runs (their advisory locks differ).
 */
export function refuseSharedSchemaNames(groups: readonly string[]): void {
  const cut = (name: string) => Buffer.from(name).subarray(0, NAME_BYTES).toString();
  const byName = new Map<string, string>();
  for (const group of new Set(groups)) {
    for (const name of Object.values(schemaNames(group)).map(cut)) {
      const other = byName.get(name);
      if (other !== undefined && other !== group) throw new Error(`projection groups "${other}" and "${group}" would share the rebuild schema ${name}: give one of them another name`);
      byName.set(name, group);
    }
  }
}

/** What an interrupted run of `group` left: its shadow and old schemas, its shadow checkpoints (those that exist). */
async function leftoversOf(client: pg.ClientBase, group: string, shadowNames: string[]): Promise<string[]> {
  const { shadow, old } = schemaNames(group);
  const { rows } = await client.query<{ name: string }>(
    `SELECT nspname::text AS name FROM pg_namespace WHERE nspname IN ($1, $2) UNION ALL SELECT name FROM event_store.projections WHERE name = ANY($3) ORDER BY 1`,
    [shadow, old, shadowNames],
  );
  return rows.map((row) => row.name);
}

/** Drops what an interrupted run of `group` left (leftoversOf). */
async function dropLeftovers(client: pg.ClientBase, group: string, shadowNames: string[]): Promise<void> {
  const { shadow, old } = schemaNames(group);
  await client.query(`DROP SCHEMA IF EXISTS ${quote(shadow)} CASCADE; DROP SCHEMA IF EXISTS ${quote(old)} CASCADE`);
  await deleteCheckpoints(client, shadowNames);
}

/** How long the drop of a killed run's leftovers waits for a session that holds them (their old tables, read): then it is left for later. */
const LEFTOVER_LOCK_TIMEOUT_MS = 5000;

/**
 * What rebuilds that were killed left (a kill after the swap committed leaves a whole copy of the
 * old tables), for every group of `groups` that no rebuild is running for: dropped (`drop`), or
 * only found (a dry run). The groups it concerns, with what was left. Run by every
 * `rebuild-projections`, even one with nothing to rebuild: until this session only the next
 * rebuild of that very group dropped them, and after a kill after the swap none was due.
 */
export async function rebuildLeftovers(databaseUrl: string, groups: ProjectionDefinition[][], drop: boolean): Promise<{ group: string; leftovers: string[] }[]> {
  refuseSharedSchemaNames(groups.map((projections) => projections[0]!.group));
  return withClient(databaseUrl, async (client) => {
    const found: { group: string; leftovers: string[] }[] = [];
    await client.query(`SET lock_timeout = ${LEFTOVER_LOCK_TIMEOUT_MS}`);
    for (const projections of groups) {
      const group = projections[0]!.group;
      const shadowNames = projections.map((p) => `${SHADOW_PREFIX}${p.name}`);
      // Looked for before the group's lock is taken, so that the lock (which a rebuild of the group
      // starting that moment would find taken, and refuse) is only taken when there is something.
      if ((await leftoversOf(client, group, shadowNames)).length === 0) continue;
      // Not while a rebuild of the group runs (it holds this lock): the schemas are that run's.
      if (!(await tryRebuildLock(client, group))) continue;
      try {
        const leftovers = await leftoversOf(client, group, shadowNames);
        if (drop) await dropLeftovers(client, group, shadowNames);
        found.push({ group, leftovers });
      } catch (error) {
        // Held by a reader of the old tables: left for the next run.
        if ((error as { code?: string }).code !== '55P03') throw error;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [REBUILD_LOCK_CLASS, group]);
      }
    }
    return found;
  });
}

interface GroupRebuild {
  group: string;
  projections: ProjectionDefinition[];
  tables: string[];
  names: string[];
  shadowNames: string[];
  shadow: string;
  old: string;
  definitions: TableDefinition[];
  /** ADD CONSTRAINT statements of the unique constraints dropped from the shadow tables for the load. */
  deferredUniques: string[];
  runner: Runner;
  /** Events of the group's types passed to its runner: the group's own figure, where the log is read once for all. */
  events: { count: number };
  /** The shadow schema is this run's, to drop on the way out if the swap does not happen. */
  created: boolean;
  swapped: boolean;
}

/**
 * Drops the shadow tables' unique constraints that no upsert of the group arbitrates on, and
 * returns the statements that add them back after the load: one sorted index build instead of a
 * per-row insert into an index that outgrows shared buffers (conda_package_build's six-column key
 * above all). A duplicate the live tables would have refused then fails that statement, naming
 * the constraint, and the rebuild is refused with the live tables unchanged.
 */
async function deferUniqueConstraints(admin: pg.Client, r: { shadow: string; tables: string[]; projections: ProjectionDefinition[] }): Promise<string[]> {
  const arbiters = declaredUpsertKeys(r.projections);
  const { rows } = await admin.query<{ table: string; name: string; definition: string; columns: string[]; tablespace: string | null; options: string[] | null }>(
    `SELECT t.relname AS table, c.conname AS name, pg_get_constraintdef(c.oid) AS definition,
            (SELECT s.spcname::text FROM pg_class i JOIN pg_tablespace s ON s.oid = i.reltablespace WHERE i.oid = c.conindid) AS tablespace,
            (SELECT i.reloptions FROM pg_class i WHERE i.oid = c.conindid) AS options,
            array(SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)) AS columns
       FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1 AND t.relname = ANY($2) AND c.contype = 'u'
        AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = c.conindid)
      ORDER BY 1, 2`,
    [r.shadow, r.tables],
  );
  const deferred: string[] = [];
  for (const row of rows.filter((row) => !arbiters.has(keySignature(row.table, row.columns)))) {
    await admin.query(`ALTER TABLE ${quote(row.table)} DROP CONSTRAINT ${quote(row.name)}`);
    // Its index's storage parameters (TableDefinition.settings gave them to the shadow's) set again
    // once it is built: they apply from then on (the build itself packs pages by the default).
    const add = `ALTER TABLE ${quote(row.table)} ADD CONSTRAINT ${quote(row.name)} ${row.definition}`;
    const options = row.options?.length ? `; ALTER INDEX ${quote(row.name)} SET (${row.options.join(', ')})` : '';
    deferred.push(inTablespace(`${add}${options}`, row.tablespace));
  }
  return deferred;
}

export async function rebuildGroups(options: RebuildOptions): Promise<RebuildReport[]> {
  const { logger } = options;
  refuseSharedSchemaNames(options.groups.map((projections) => projections[0]!.group));
  const started = performance.now();
  // Keepalives both ways (server and client): this connection is idle for the whole fill, hours on
  // a large log, and holds the swap's transaction; one that a network cut silently would hang at
  // the swap (client), or keep its locks and the group's rebuild lock on the server for hours.
  // READ COMMITTED whatever the database's default: under REPEATABLE READ the swap's checks under
  // its locks read the catalog as it was before them, and a serve's batch committed in between
  // failed the swap with a serialization error, after the whole fill.
  const admin = new pg.Client(keepingOptions({ connectionString: options.databaseUrl, ...LONG_LIVED_CONNECTION, options: `${LONG_LIVED_CONNECTION.options} ${READ_COMMITTED}` }));
  admin.on('error', (error) => logger.warn({ err: error }, 'rebuild: connection lost'));
  await admin.connect();
  // The user's timeouts (a role's statement_timeout, say) are for their statements, not for the
  // rebuild's: a unique key added back over millions of rows outlasts them, and the swap's
  // transaction waits idle while the new tables catch up. The settings this server has.
  await turnOffTimeouts(admin, ['statement_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout']);
  // What has no tablespace of its own live is made in the database's default, whatever tablespace
  // a role's or the database's settings name (TableDefinition.settings, inTablespace).
  await admin.query(`SET default_tablespace = ''`);
  const pool = createPool({ connectionString: options.databaseUrl, max: 3, options: READ_COMMITTED, onError: (error) => logger.warn({ err: error }, 'rebuild pool: connection lost') });
  const interrupted = () => {
    if (options.signal?.aborted) throw new Error('rebuild interrupted: the live tables, checkpoints and fingerprints are unchanged');
  };
  let events = 0;
  /** deadlock_timeout plus a second, once read (pastDeadlockCheck). */
  let deadlockWaitMs: number | undefined;
  const feed = (phase: 'fill' | 'catch-up', group?: string) => {
    const before = events;
    return {
      batchSize: options.batchSize,
      signal: options.signal,
      onBatch: (progress: { position: number; events: number }) => {
        events = before + progress.events;
        options.onProgress?.({ position: progress.position, events, phase, group });
      },
    };
  };
  const rebuilds: GroupRebuild[] = [];
  const shadowRunner = (r: Pick<GroupRebuild, 'projections' | 'shadow' | 'events'>): Runner => {
    const runner = createRunner({
      log: options.log,
      pool,
      projections: r.projections,
      logger,
      batchSize: options.batchSize,
      schema: r.shadow,
      checkpointName: (projection) => `${SHADOW_PREFIX}${projection.name}`,
    });
    const types = new Set(runner.types);
    return {
      ...runner,
      async apply(batch, signal) {
        await runner.apply(batch, signal);
        for (const event of batch) if (types.has(event.type)) r.events.count++;
      },
    };
  };
  try {
    for (const projections of options.groups) {
      const group = projections[0]!.group;
      if (!(await tryRebuildLock(admin, group))) throw new RebuildInProgressError(group);
      const names = projections.map((p) => p.name);
      const { shadow, old } = schemaNames(group);
      const r = { group, projections, tables: projections.flatMap((p) => p.tables), names, shadow, old, events: { count: 0 } };
      rebuilds.push({ ...r, shadowNames: names.map((name) => `${SHADOW_PREFIX}${name}`), definitions: [], deferredUniques: [], runner: shadowRunner(r), created: false, swapped: false });
    }

    for (const r of rebuilds) {
      // A killed run's tables may keep foreign keys to other groups' tables: dropped one by one
      // first, as after a swap (the DROP SCHEMA would wait, without end, for those tables' readers).
      for (const schema of [r.old, r.shadow]) await unlinkOutward(r, schema);
      await dropLeftovers(admin, r.group, r.shadowNames);
      r.definitions = await checkedDefinitions(admin, r);
      // Shadow tables: columns, defaults, keys, checks and cascading foreign keys now; the other
      // foreign keys and the indexes after the load.
      r.created = true;
      await inTransaction(admin, r.shadow, async () => {
        await admin.query(`CREATE SCHEMA ${quote(r.shadow)}`);
        // The tables' owners, when the rebuilding role is a member of theirs: PostgreSQL checks
        // an index's schema privilege as its table's owner, and the keys and indexes added after
        // the load failed (after the whole fill) on a schema that only the rebuilding role may use.
        for (const { owner } of (await admin.query<{ owner: string }>(OTHER_OWNERS, [r.tables])).rows) {
          await admin.query(`GRANT USAGE, CREATE ON SCHEMA ${quote(r.shadow)} TO ${quote(owner)}`);
        }
        for (const d of r.definitions) for (const statement of [...d.sequences, d.create, ...d.settings, ...d.ownership]) await admin.query(statement);
        for (const d of r.definitions) for (const statement of d.beforeLoad) await admin.query(statement);
        r.deferredUniques = await deferUniqueConstraints(admin, r);
      });
      for (const d of r.definitions) for (const statement of d.outwardBeforeLoad) await briefly(r, statement, { patient: true });
    }

    let position = await catchUpTogether(options.log, rebuilds.map((r) => r.runner), feed('fill'));
    interrupted();
    // A projection that stopped on an event dooms its group's rebuild: say so now, before keys,
    // indexes and a catch-up that would only read the log again up to the same event.
    for (const r of rebuilds) await shadowCheckpoints(r, '');
    await options.onPhase?.('filled');
    interrupted();

    for (const r of rebuilds) {
      const toBuild = r.deferredUniques.length + r.definitions.reduce((n, d) => n + d.afterLoad.length + d.outwardKeys.length, 0);
      let built = 0;
      const progress = () => options.onProgress?.({ position, events, phase: 'indexes', group: r.group, detail: `${++built} of ${toBuild} keys and indexes` });
      await inTransaction(admin, r.shadow, async () => {
        for (const statement of r.deferredUniques) {
          await admin.query(statement).catch((error: Error & { code?: string; detail?: string }) => {
            if (error.code !== '23505') throw error;
            throw new Error(
              `the rebuilt tables of projection group "${r.group}" break a unique constraint of the live tables: ${error.message}` +
                `${error.detail ? ` (${error.detail})` : ''}; the live tables, checkpoints and fingerprints are unchanged`,
            );
          });
          progress();
        }
        for (const d of r.definitions) {
          for (const statement of d.afterLoad) {
            await admin.query(statement);
            progress();
          }
          for (const statement of [...d.privileges, ...d.properties]) await admin.query(statement);
        }
      });
      for (const d of r.definitions) {
        for (const statements of d.outwardKeys) {
          for (const statement of statements) await briefly(r, statement, { patient: true });
          progress();
        }
      }
    }
    // The planner's statistics, before readers get the new tables: without them (until an
    // autovacuum's analyze, and never with autovacuum off) the group's queries were planned on
    // default estimates. The statistics targets carried over apply.
    for (const r of rebuilds) await admin.query(`ANALYZE ${r.tables.map((table) => `${quote(r.shadow)}.${quote(table)}`).join(', ')}`);
    await options.onPhase?.('finished');
    interrupted();

    // Events appended during the load and the index build, by runners that read the tables'
    // foreign keys afresh (the order they insert parents and children in depends on them).
    for (const r of rebuilds) r.runner = shadowRunner(r);
    position = Math.max(position, await catchUpTogether(options.log, rebuilds.map((r) => r.runner), feed('catch-up')));
    interrupted();

    const reports: RebuildReport[] = [];
    for (const r of rebuilds) {
      const reached = await swap(r);
      reports.push({ group: r.group, position: Math.max(position, reached), events: r.events.count, rows: {}, seconds: (performance.now() - started) / 1000 });
      options.onProgress?.({ position: Math.max(position, reached), events, phase: 'swap', group: r.group });
    }
    // Counted once every group is swapped in: a count of a large table between two swaps held
    // the next one back (its catch-up, with the live checkpoints locked, then had more to do).
    for (const [i, r] of rebuilds.entries()) {
      for (const table of r.tables) {
        const { rows: [count] } = await admin.query<{ n: string }>(`SELECT count(*) AS n FROM public.${quote(table)}`);
        reports[i]!.rows[table] = Number(count!.n);
      }
      logger.info(reports[i], 'rebuilt');
    }
    return reports;
  } catch (error) {
    await admin.query('ROLLBACK').catch(() => undefined);
    const swapped = rebuilds.filter((r) => r.swapped).map((r) => `"${r.group}"`);
    if (swapped.length && error instanceof Error) {
      error.message += ` (group${swapped.length > 1 ? 's' : ''} ${swapped.join(', ')} had been rebuilt and swapped in before this failure; the rest were not)`;
    }
    // What this run created and did not swap in: dropped now (a crash leaves it to the next run).
    for (const r of rebuilds.filter((r) => r.created && !r.swapped)) {
      try {
        await emptyIfLinkedOutward(r, r.shadow);
        await unlinkOutward(r, r.shadow);
        await admin.query(`DROP SCHEMA IF EXISTS ${quote(r.shadow)} CASCADE`);
        await deleteCheckpoints(admin, r.shadowNames);
      } catch (cleanup) {
        logger.warn({ err: cleanup, group: r.group }, 'could not drop the shadow tables; the next rebuild will');
      }
    }
    throw error;
  } finally {
    await admin.query('SELECT pg_advisory_unlock_all()').catch(() => undefined);
    await admin.end().catch(() => undefined);
    await pool.end().catch(() => undefined);
  }

  /** A lock wait that outlasts the server's deadlock check by a second (swap, briefly). */
  async function pastDeadlockCheck(): Promise<number> {
    // Read once per run: every foreign key's statement and every swap asked the server again.
    deadlockWaitMs ??= (await admin.query<{ ms: number }>(`SELECT setting::int AS ms FROM pg_settings WHERE name = 'deadlock_timeout'`)).rows[0]!.ms + 1000;
    return deadlockWaitMs;
  }

  /**
   * A statement that adds or drops a foreign key to another group's live table (outwardKeys,
   * outwardBeforeLoad, unlinkOutward), in a transaction of its own: adding one locks the other
   * table against its writers, dropping one against everyone (its triggers go), and in the index
   * build's transaction, or in the DROP SCHEMA of the old tables, that lock was held until the
   * last index was built (minutes on a large log), or waited for without end behind a reader. Its
   * lock attempt gives up after a moment (`patient`: past the deadlock check, which cancels an
   * autovacuum in the way; else the swap's short waits) and is tried again after a pause, so that
   * a long transaction on the other table does not hold that table's readers and writers queued
   * behind this one.
   */
  async function briefly(r: GroupRebuild, statement: string, { patient }: { patient: boolean }): Promise<void> {
    const pastDeadlockCheckMs = await pastDeadlockCheck();
    for (let attempt = 1; ; attempt++) {
      try {
        await inTransaction(admin, r.shadow, async () => {
          // A key added must be added, past an autovacuum of the other table too; a key dropped
          // locks that table against its readers as well while it waits, so it waits no longer
          // than the swap does, and when it cannot, the tables are left for a later run.
          const waitMs = patient ? pastDeadlockCheckMs : Math.min(SWAP_LOCK_TIMEOUT_MS.first * attempt, SWAP_LOCK_TIMEOUT_MS.max);
          await admin.query(`SET LOCAL lock_timeout = ${waitMs}`);
          await admin.query(statement);
        });
        return;
      } catch (error) {
        await admin.query('ROLLBACK').catch(() => undefined);
        if ((error as { code?: string }).code !== '55P03' /* lock_not_available */ || options.signal?.aborted) throw error;
        if (attempt >= SWAP_ATTEMPTS) {
          throw new Error(
            `could not lock the tables that group "${r.group}" references by foreign key after ${attempt} attempts: long-running transactions hold them (see pg_stat_activity)`,
          );
        }
        logger.warn({ group: r.group, attempt }, 'a transaction holds a table that the group references; trying its foreign key again');
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  }

  /**
   * Drops the foreign keys from the tables of `schema` (the old tables, or the shadow ones) to
   * tables outside it, one by one (briefly), before the schema itself is dropped: the DROP SCHEMA
   * would take the other tables' locks all at once, and wait for them without end.
   */
  async function unlinkOutward(r: GroupRebuild, schema: string): Promise<void> {
    const { rows } = await admin.query<{ statement: string }>(
      `SELECT format('ALTER TABLE %I.%I DROP CONSTRAINT %I', n.nspname, t.relname, c.conname) AS statement
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace JOIN pg_class p ON p.oid = c.confrelid
        WHERE c.contype = 'f' AND n.nspname = $1 AND p.relnamespace <> t.relnamespace
        ORDER BY 1`,
      [schema],
    );
    for (const { statement } of rows) await briefly(r, statement, { patient: false });
  }

  /**
   * Empties the tables of `schema` (the old tables, or the shadow ones) when they have foreign
   * keys to other groups' tables, which unlinkOutward may leave for a later run: so long as a
   * key's table holds rows, a delete in the other table that they reference (the other group's
   * projector applying an event) fails on it. TRUNCATE locks the tables emptied only.
   */
  async function emptyIfLinkedOutward(r: GroupRebuild, schema: string): Promise<void> {
    if (!r.definitions.some((d) => d.outwardKeys.length + d.outwardBeforeLoad.length > 0)) return;
    const { rows } = await admin.query<{ table: string }>(
      `SELECT format('%I.%I', n.nspname, c.relname) AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY($2) AND c.relkind = 'r'`,
      [schema, r.tables],
    );
    if (rows.length) await admin.query(`TRUNCATE ${rows.map((row) => row.table).join(', ')}`);
  }

  /**
   * Swaps a group's shadow tables in, retrying while readers hold the live tables longer than a
   * lock attempt waits. Returns the position the new tables were brought to.
   */
  async function swap(r: GroupRebuild): Promise<number> {
    const fingerprints = new Map<string, string>();
    for (const projection of r.projections) fingerprints.set(projection.name, await fingerprintOf(admin, projection, 'public'));
    // PostgreSQL cancels an autovacuum that holds a lock another session waits for, but only once
    // that session has waited deadlock_timeout (when its deadlock check runs): a lock attempt that
    // gives up sooner never gets past one.
    const pastDeadlockCheckMs = await pastDeadlockCheck();
    // The first attempt waits that long for the shadow tables (autovacuum's likely targets, fresh);
    // the others only while an autovacuum holds one: a session of another kind that holds one
    // would otherwise hold the live checkpoints (serve's batches) that long at every attempt.
    let autovacuumOnShadow = true;
    let autovacuumOnLive = false;
    for (let attempt = 1; ; attempt++) {
      try {
        const shortMs = Math.min(SWAP_LOCK_TIMEOUT_MS.first * attempt, SWAP_LOCK_TIMEOUT_MS.max);
        const reached = await swapOnce(r, fingerprints, { shadow: autovacuumOnShadow ? pastDeadlockCheckMs : shortMs, live: autovacuumOnLive ? pastDeadlockCheckMs : shortMs });
        r.swapped = true;
        await unlinkOutward(r, r.old)
          .then(() => admin.query(`DROP SCHEMA ${quote(r.old)} CASCADE; DROP SCHEMA ${quote(r.shadow)} CASCADE`))
          .catch((error) => logger.warn({ err: error, group: r.group }, 'could not drop the old tables; the next rebuild will'));
        return reached;
      } catch (error) {
        await admin.query('ROLLBACK').catch(() => undefined);
        const code = (error as { code?: string }).code;
        const busy = code === '55P03' /* lock_not_available */ || code === '40P01'; /* deadlock_detected */
        if (!busy || options.signal?.aborted) throw error;
        // An autovacuum on a live table (a long one on a large table would outlast every attempt):
        // the next attempt waits past the deadlock check, which cancels it. Readers queue behind
        // the waiting swap meanwhile, about a second, once.
        ({ shadow: autovacuumOnShadow, live: autovacuumOnLive } = await autovacuumHolding(r));
        if (autovacuumOnLive) logger.warn({ group: r.group, attempt }, 'autovacuum holds a live table; the next attempt waits past deadlock_timeout, when PostgreSQL cancels it');
        if (attempt >= SWAP_ATTEMPTS) {
          throw new Error(
            `could not lock the tables of group "${r.group}" for the swap after ${attempt} attempts: long-running transactions hold them ` +
              '(see pg_stat_activity); the live tables, checkpoints and fingerprints are unchanged',
          );
        }
        logger.warn({ group: r.group, attempt }, 'readers hold the live tables; trying the swap again');
        await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
      }
    }
  }

  /**
   * The group's shadow checkpoints (their live names and positions), or the refusal of the rebuild
   * when one of its projections stopped on an event.
   */
  async function shadowCheckpoints(r: GroupRebuild, lock: 'FOR UPDATE' | ''): Promise<{ name: string; position: number }[]> {
    const { rows } = await admin.query<{ name: string; position: string; state: string; error: string | null; error_position: string | null; error_event_type: string | null; error_event_id: string | null }>(
      `SELECT name, position, state, error, error_position, error_event_type, error_event_id::text
         FROM event_store.projections WHERE name = ANY($1) ORDER BY name ${lock}`,
      [r.shadowNames],
    );
    return rows.map((shadow) => {
      const name = shadow.name.slice(SHADOW_PREFIX.length);
      if (shadow.state !== 'running') {
        throw new Error(
          `projection ${name} stopped at event ${shadow.error_position} (${shadow.error_event_type} ${shadow.error_event_id}) during the rebuild: ` +
            `${shadow.error}; the live tables, checkpoints and fingerprints are unchanged`,
        );
      }
      return { name, position: toNumber(shadow.position) };
    });
  }

  /** Whether an autovacuum worker holds a lock on one of the group's shadow tables, and on one of its live ones: one query. */
  async function autovacuumHolding(r: GroupRebuild): Promise<{ shadow: boolean; live: boolean }> {
    const { rows } = await admin.query<{ schema: string }>(
      `SELECT DISTINCT n.nspname::text AS schema
         FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE l.granted AND a.backend_type = 'autovacuum worker' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND n.nspname IN ('public', $1) AND c.relname = ANY($2)`,
      [r.shadow, r.tables],
    );
    return { shadow: rows.some((row) => row.schema === r.shadow), live: rows.some((row) => row.schema === 'public') };
  }

  async function swapOnce(r: GroupRebuild, fingerprints: Map<string, string>, lockTimeoutMs: { shadow: number; live: number }): Promise<number> {
    await admin.query('BEGIN');
    // The live checkpoint rows first, as every runner batch locks them: a serve's batch in flight
    // commits first, the next one waits for the swap. (Rows created if never built, so that a
    // serve starting now waits too.)
    await ensureCheckpoints(admin, r.names);
    const live = await lockCheckpoints(admin, r.names);
    // The new tables must hold every event the live ones hold: a serve running during the rebuild
    // went on from its own position and will not read those events again.
    const livePosition = Math.max(0, ...[...live.values()].map((row) => row.position));
    const reached = await catchUpTogether(logUpTo(options.log, livePosition), [r.runner], feed('catch-up', r.group));
    interrupted();
    const shadows = await shadowCheckpoints(r, 'FOR UPDATE');
    for (const shadow of shadows) {
      if (shadow.position < livePosition) throw new Error(`projection ${shadow.name}: the rebuilt tables are at ${shadow.position}, behind the live ones at ${livePosition}`);
    }

    // What the rebuild copied at its start must still be what is live: a migration or a grant run
    // meanwhile would be undone by the swap (and its migration recorded as applied). Read in full
    // here, before the tables' locks, as no reader waits yet; under them, one statement says
    // whether anything changed since (a full reading there, some hundred catalog round trips for
    // conda-store's sixteen tables, held every reader 250 to 480 ms: found by a review).
    // Stamped first (as the runner's tables are): a change that commits during the full reading
    // is then one the stamps compared under the locks see; stamped after it, it was in the stamps,
    // and the swap dropped it.
    const stamps = await definitionStamps(admin, r.tables);
    await refuseChangedDefinitions(admin, r);
    // The shadow tables first, on their own: autovacuum is likely at work on them, freshly loaded,
    // and waiting for it while holding the live ones would stop every reader. Past the deadlock
    // check, which cancels an autovacuum (no reader queues behind a shadow table); until this
    // session one statement took both with a timeout below it, so an autovacuum of the shadow
    // tables (minutes on a large one) failed every attempt, and the rebuild with them.
    await admin.query(`SET LOCAL lock_timeout = ${lockTimeoutMs.shadow}`);
    await admin.query(`LOCK TABLE ${r.tables.map((table) => `${quote(r.shadow)}.${quote(table)}`).join(', ')} IN ACCESS EXCLUSIVE MODE`);
    // The live ones briefly: readers queue behind a waiting ACCESS EXCLUSIVE request, so a session
    // that holds one makes this attempt give up, not wait.
    await admin.query(`SET LOCAL lock_timeout = ${lockTimeoutMs.live}`);
    await admin.query(`LOCK TABLE ${r.tables.map((table) => `public.${quote(table)}`).join(', ')} IN ACCESS EXCLUSIVE MODE`);
    // The live lock timeout holds to the end: moving a table also locks its sequences, which LOCK
    // TABLE cannot take, and a session holding one (a nextval in an open transaction) held the
    // swap, and every reader of the group behind it, for as long as it stayed open.
    const changed = (await definitionStamps(admin, r.tables)).find((stamp, i) => stamp.stamp !== stamps[i]?.stamp);
    if (changed) throw definitionChanged(r.group, changed.table);
    // A foreign key or a view added meanwhile would be dropped with the old tables.
    await refuseForeignReferences(admin, r);
    await refuseDependents(admin, r);
    await admin.query(`CREATE SCHEMA ${quote(r.old)}`);
    for (const table of r.tables) await admin.query(`ALTER TABLE public.${quote(table)} SET SCHEMA ${quote(r.old)}`);
    for (const table of r.tables) await admin.query(`ALTER TABLE ${quote(r.shadow)}.${quote(table)} SET SCHEMA public`);
    // Under the swap's locks, so that no reader of the old tables is left to see them emptied.
    await emptyIfLinkedOutward(r, r.old);
    for (const projection of r.projections) {
      await admin.query(
        `INSERT INTO event_store.projections (name, position, fingerprint, state)
         SELECT $1, s.position, $3, s.state FROM event_store.projections s WHERE s.name = $2
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state,
           error = NULL, error_position = NULL, error_event_id = NULL, error_event_type = NULL, updated_at = now()`,
        [projection.name, `${SHADOW_PREFIX}${projection.name}`, fingerprints.get(projection.name)],
      );
    }
    await deleteCheckpoints(admin, r.shadowNames);
    await options.onPhase?.('swapping');
    interrupted();
    await admin.query('COMMIT');
    return Math.max(reached, ...shadows.map((shadow) => shadow.position));
  }
}

/** Rebuilds one group (see rebuildGroups). */
export async function rebuildGroup(options: Omit<RebuildOptions, 'groups'> & { projections: ProjectionDefinition[] }): Promise<RebuildReport> {
  const [report] = await rebuildGroups({ ...options, groups: [options.projections] });
  return report!;
}

async function inTransaction(client: pg.Client, searchPath: string, work: () => Promise<void>): Promise<void> {
  await client.query('BEGIN');
  // The group's own tables resolve to the shadow ones; anything else (a foreign key to a table of
  // another group) to the live one.
  await client.query(`SET LOCAL search_path TO ${quote(searchPath)}, public`);
  await work();
  await client.query('COMMIT');
}

/** The rebuild lock of `group` (session-level, on `client`), if no other process holds it. */
async function tryRebuildLock(client: pg.ClientBase, group: string): Promise<boolean> {
  const { rows: [lock] } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS ok', [REBUILD_LOCK_CLASS, group]);
  return lock!.ok;
}

/** Whether a process holds the rebuild lock of `group` (looked at, not taken: a rebuild starting then is not refused for it). */
async function rebuildRunning(client: pg.ClientBase, group: string): Promise<boolean> {
  const { rows: [held] } = await client.query<{ held: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = hashtext($2)::oid AND objsubid = 2 AND granted
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())) AS held`,
    [REBUILD_LOCK_CLASS, group],
  );
  return held!.held;
}

/**
 * The checks a rebuild makes of a group before it creates anything (a foreign key or a dependent
 * from outside the group, what a rebuild cannot carry over): the live tables' definitions, or
 * RebuildRefusedError. Shared by the rebuild and its dry run, which must not drift apart.
 */
async function checkedDefinitions(client: pg.ClientBase, r: Pick<GroupRebuild, 'group' | 'tables'>): Promise<TableDefinition[]> {
  await refuseMissingRights(client, r);
  await refuseForeignReferences(client, r);
  await refuseDependents(client, r);
  const definitions = await readTableDefinitions(client, 'public', r.tables);
  refuseUncarried({ group: r.group, definitions });
  return definitions;
}

/**
 * The rights the rebuild needs beyond what creating the shadow tables asks: the swap moves the
 * new tables into schema public (CREATE on it) and moves the live ones out and drops them (their
 * owner's rights); the new tables and indexes go in the live ones' tablespaces (CREATE on each).
 * Without them the rebuild failed late: the swap after the whole fill, hours on a large log.
 */
async function refuseMissingRights(client: pg.ClientBase, r: Pick<GroupRebuild, 'group' | 'tables'>): Promise<void> {
  const { rows: [rights] } = await client.query<{ role: string; db: string; schema: boolean; database: boolean; notOwned: string | null; tablespace: string | null }>(
    `SELECT current_user::text AS role, current_database()::text AS db, has_schema_privilege('public', 'CREATE') AS schema, has_database_privilege(current_database(), 'CREATE') AS database,
            (SELECT format('%s (owned by %s)', c.relname, pg_get_userbyid(c.relowner)) FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) AND NOT pg_has_role(c.relowner, 'USAGE') ORDER BY c.relname LIMIT 1) AS "notOwned",
            (SELECT s.spcname::text FROM pg_class c JOIN pg_tablespace s ON s.oid = c.reltablespace
              WHERE c.oid IN (SELECT t.oid FROM pg_class t WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1)
                              UNION ALL
                              SELECT x.indexrelid FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid WHERE t.relnamespace = 'public'::regnamespace AND t.relname = ANY($1))
                AND NOT has_tablespace_privilege(s.oid, 'CREATE') ORDER BY 1 LIMIT 1) AS tablespace`,
    [r.tables],
  );
  const { role, db, schema, database, notOwned, tablespace } = rights!;
  const refuse = (what: string, grant: string) => {
    throw new RebuildRefusedError(`cannot rebuild projection group "${r.group}": role ${role} ${what}; ${grant}; the live tables, checkpoints and fingerprints are unchanged`);
  };
  if (notOwned) refuse(`does not own table ${notOwned}, which the swap moves out and drops`, 'run the rebuild as its owner, or as a member of the owning role');
  if (!database) refuse('may not create schemas in this database (the shadow tables go in one of their own)', `GRANT CREATE ON DATABASE "${db}" TO ${role}`);
  if (!schema) refuse('may not create tables in schema public, which the swap moves the new tables into', `GRANT CREATE ON SCHEMA public TO ${role}`);
  if (tablespace) refuse(`may not create tables or indexes in tablespace ${tablespace}, where the live ones are`, `GRANT CREATE ON TABLESPACE ${tablespace} TO ${role}`);
}

/**
 * The swap moves the group's live tables out and drops them: a foreign key into them from a table
 * outside the group would be dropped with them. Refused, with what to do instead.
 */
async function refuseForeignReferences(admin: pg.ClientBase, r: Pick<GroupRebuild, 'group' | 'tables'>): Promise<void> {
  const { rows } = await admin.query<{ constraint: string; child: string; parent: string }>(
    `SELECT c.conname::text AS constraint, cn.nspname || '.' || child.relname AS child, parent.relname::text AS parent
       FROM pg_constraint c
       JOIN pg_class child ON child.oid = c.conrelid JOIN pg_namespace cn ON cn.oid = child.relnamespace
       JOIN pg_class parent ON parent.oid = c.confrelid JOIN pg_namespace pn ON pn.oid = parent.relnamespace
      WHERE c.contype = 'f' AND pn.nspname = 'public' AND parent.relname = ANY($1)
        AND NOT (cn.nspname = 'public' AND child.relname = ANY($1))
      ORDER BY 1`,
    [r.tables],
  );
  if (rows.length) {
    const [first] = rows;
    throw new RebuildRefusedError(
      `cannot rebuild projection group "${r.group}": ${first!.child} references ${first!.parent} by foreign key ${first!.constraint}, ` +
        `which the swap would drop; the projection that owns ${first!.child} must be in group "${r.group}"`,
    );
  }
}

/**
 * Objects that depend on a table of the group (on the table, its row type or a sequence it owns)
 * would go on using the old table after the swap, and then be dropped with it by the CASCADE that
 * drops the old tables: a view, a SQL-body function, a policy of another table (which, dropped,
 * leaves that table with row-level security and no policy: no row visible), a default of another
 * table that takes the group's sequence. Refused, naming the first. The group's own parts (its
 * constraints, indexes, defaults, sequences) and its foreign keys between its tables are not
 * dependents; foreign keys from outside the group are refused apart (refuseForeignReferences).
 */
async function refuseDependents(admin: pg.ClientBase, r: Pick<GroupRebuild, 'group' | 'tables'>): Promise<void> {
  const { rows } = await admin.query<{ view: string | null; object: string; table: string }>(
    DEPENDENTS,
    [r.tables],
  );
  const [first] = rows;
  if (!first) return;
  const unchanged = 'the live tables, checkpoints and fingerprints are unchanged';
  throw new RebuildRefusedError(
    first.view
      ? `cannot rebuild projection group "${r.group}": view ${first.view} reads ${first.table}, and would go on reading the old table after the swap, ` +
          `then be dropped with it; drop the view before the rebuild and create it again after; ${unchanged}`
      : `cannot rebuild projection group "${r.group}": ${first.object} depends on ${first.table}, and would go on using the old table after the swap, ` +
          `then be dropped with it; drop it before the rebuild and create it again after; ${unchanged}`,
  );
}

/** What a rebuild cannot carry over to the new tables (TableDefinition.unsupported): refused, named. */
function refuseUncarried(r: Pick<GroupRebuild, 'group' | 'definitions'>): void {
  const found = r.definitions.find((d) => d.unsupported.length > 0);
  if (!found) return;
  throw new RebuildRefusedError(
    `cannot rebuild projection group "${r.group}": table ${found.table} has ${found.unsupported.join(', ')}, which a rebuild cannot carry over ` +
      'to the new tables (dropped with the old table, it would be lost without a word); remove it before the rebuild and set it again after; ' +
      'the live tables, checkpoints and fingerprints are unchanged',
  );
}

/** The live tables' definitions (columns, keys, indexes, grants) are still those the shadow tables were made from. */
async function refuseChangedDefinitions(admin: pg.Client, r: Pick<GroupRebuild, 'group' | 'tables' | 'definitions'>): Promise<void> {
  const now = await readTableDefinitions(admin, 'public', r.tables);
  const changed = now.find((definition, i) => JSON.stringify(definition) !== JSON.stringify(r.definitions[i]));
  if (changed) throw definitionChanged(r.group, changed.table);
}

function definitionChanged(group: string, table: string): Error {
  return new Error(
    `the live table ${table} of projection group "${group}" changed during the rebuild (a migration, a grant?): the swap would undo it; ` +
      'run the rebuild again; the live tables, checkpoints and fingerprints are unchanged',
  );
}

const DEFINITION_STAMP = sqlFile(import.meta.url, 'definition-stamp.sql');

/** Each of `tables`' definition stamp (definition-stamp.sql), by table name. */
async function definitionStamps(admin: pg.Client, tables: string[]): Promise<{ table: string; stamp: string }[]> {
  return (await admin.query<{ table: string; stamp: string }>(DEFINITION_STAMP, [tables])).rows;
}

/**
 * Why a rebuild of each of `groups` would be refused now, by the checks a rebuild makes before its
 * fill (checkedDefinitions; a rebuild of the group running), changing nothing and taking no lock:
 * for --dry-run, which said "would rebuild" of a group that the rebuild then refused. Any other
 * error is thrown.
 */
export async function rebuildRefusals(databaseUrl: string, groups: readonly ProjectionDefinition[][]): Promise<{ group: string; reason: string }[]> {
  refuseSharedSchemaNames(groups.map((projections) => projections[0]!.group));
  return withClient(databaseUrl, async (client) => {
    const refusals: { group: string; reason: string }[] = [];
    for (const projections of groups) {
      const r = { group: projections[0]!.group, tables: projections.flatMap((p) => p.tables) };
      try {
        if (await rebuildRunning(client, r.group)) throw new RebuildInProgressError(r.group);
        await checkedDefinitions(client, r);
      } catch (error) {
        if (!(error instanceof RebuildRefusedError)) throw error;
        refusals.push({ group: r.group, reason: error.message });
      }
    }
    return refusals;
  });
}

export interface RebuildPlanEntry {
  group: string;
  projections: { name: string; reason: string }[];
}

/**
 * Which groups to rebuild: the named projections' groups, every group (`all`), or, with neither,
 * the groups with a projection whose fingerprint changed since it was built, and why. Not, with
 * neither, a projection a newer release built (its fingerprint records a higher version): this
 * release would rebuild it with its older handlers, under the newer release's processes, whose
 * runners do not stop for an older version. It is passed to `skipped`, with why; named, or with
 * `all`, it is rebuilt (a deliberate downgrade).
 */
export async function planRebuild(
  databaseUrl: string,
  projections: ProjectionDefinition[],
  names: string[],
  all: boolean,
  skipped: (name: string, why: string) => void = () => undefined,
): Promise<RebuildPlanEntry[]> {
  const unknown = names.filter((name) => !projections.some((p) => p.name === name));
  if (unknown.length) throw new Error(`unknown projection(s): ${unknown.join(', ')} (known: ${projections.map((p) => p.name).join(', ')})`);
  return withClient(databaseUrl, async (client) => {
    const { rows } = await client.query<{ name: string; fingerprint: string | null }>('SELECT name, fingerprint FROM event_store.projections');
    const recorded = new Map(rows.map((row) => [row.name, row.fingerprint]));
    const reasons = new Map<string, string>();
    const newer = new Set<string>();
    for (const projection of projections) {
      if (all) reasons.set(projection.name, 'all projections asked for');
      else if (names.length) {
        if (names.includes(projection.name)) reasons.set(projection.name, 'named on the command line');
      } else {
        const fingerprint = recorded.get(projection.name) ?? null;
        const recordedVersion = fingerprintVersion(fingerprint);
        if (recordedVersion !== undefined && recordedVersion > projection.version) {
          skipped(projection.name, `built by a newer release (version ${recordedVersion}; this release has version ${projection.version}): name it to rebuild it with this release's handlers`);
          newer.add(projection.name);
          continue;
        }
        const change = fingerprintChange(fingerprint, await fingerprintOf(client, projection));
        if (change) reasons.set(projection.name, change);
      }
    }
    const groups = new Map<string, RebuildPlanEntry>();
    for (const projection of projections) {
      const changedInGroup = projections.filter((p) => p.group === projection.group && reasons.has(p.name)).map((p) => p.name);
      if (!changedInGroup.length) continue;
      // A group is rebuilt whole: one with a projection a newer release built would rebuild that
      // one too, with this release's older handlers (a downgrade nobody asked for). Left as it is.
      const newerInGroup = projections.filter((p) => p.group === projection.group && newer.has(p.name)).map((p) => p.name);
      if (newerInGroup.length) {
        if (reasons.has(projection.name)) {
          skipped(projection.name, `${reasons.get(projection.name)}, but it shares foreign keys with ${newerInGroup.join(', ')}, built by a newer release: name them to rebuild the group with this release's handlers`);
        }
        continue;
      }
      const entry = groups.get(projection.group) ?? { group: projection.group, projections: [] };
      entry.projections.push({ name: projection.name, reason: reasons.get(projection.name) ?? `shares foreign keys with ${changedInGroup.join(', ')}` });
      groups.set(projection.group, entry);
    }
    return [...groups.values()];
  });
}
