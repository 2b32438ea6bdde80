/**
 * rebuild-projections (issue #5; contract.md, "Rebuild"): blue/green rebuilds of projection groups
 * into shadow tables, swapped in atomically with their checkpoints and fingerprints.
 *
 * - Equivalence: after `rebuild-projections --all` every table is identical, row for row and id for
 *   id, to what live projection produced for the same log, and defined exactly as before.
 * - SIGKILL during the fill, after it (with events appended meanwhile), and inside the swap;
 *   SIGINT: the live tables, checkpoints and fingerprints stay as they were, the next run cleans up
 *   and succeeds.
 * - A reader in a loop sees complete tables, the old ones then the new ones, and never an error.
 * - Events appended during a rebuild all reach the swapped-in tables, with and without a `serve`
 *   running across the swap.
 * - Fingerprints decide what a bare `rebuild-projections` rebuilds; a second rebuild of a group is
 *   refused; the README's two worked examples, run as a maintainer types them.
 *
 * The log is appended once into a database of the file's own and projected once into another;
 * each test works on a copy (CREATE DATABASE ... TEMPLATE). The rebuild is the real CLI in a child
 * process wherever the test is about what an operator runs.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import knexFactory from 'knex';
import pino from 'pino';
import type pg from 'pg';
import type { Envelope } from '../src/catalogue/index.js';
import { prepareDatabase } from '../src/db/ensure-database.js';
import { knexConfig } from '../src/db/knex-config.js';
import { appendEnvelopes } from '../src/decide/append-batch.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import type { EventLog } from '../src/log/types.js';
import { defineProjection, groupsOf, type ProjectionDefinition } from '../src/projection/definition.js';
import { planRebuild, REBUILD_LOCK_CLASS, RebuildInProgressError, RebuildRefusedError, rebuildGroup, rebuildGroups, rebuildRefusals, refuseSharedSchemaNames } from '../src/projection/rebuild.js';
import { createProjectionService } from '../src/projection/service.js';
import { allProjections, condaStoreProjections, namespaceUsage, specifications } from '../projections/index.js';
import { root, type CliResult } from './helpers/cli.js';
import { freshDatabase, privateServer, seededOnce, withAdmin } from './helpers/database.js';
import { migrateLatest } from '../src/db/migrate.js';
import { appendInBatches, generatedHistory } from './helpers/generated-history.js';
import { realisticHistory } from './helpers/history.js';
import { describeTable, type Queryable } from './helpers/introspect.js';
import { catchUp, silentLogger, slots, waitUntil } from './helpers/projection.js';
import {
  checksumSql,
  connect,
  copyOf,
  digests,
  dropDatabase,
  expectedNamespaceUsage,
  headOf,
  leftovers,
  liveCheckpoints,
  namespaceUsageRows,
  noRebuildRunning,
  PROJECTION_TABLES,
  runNpx,
  runRebuild,
  schemaSnapshot,
  sequencesBehindMaxId,
  shown,
  startRebuild,
  tableOids,
  until,
  withDatabase,
  type LiveCheckpoint,
  type SchemaSnapshot,
} from './helpers/rebuild.js';
import { condaStoreTableNames, condaStoreTables } from './schema/conda-store-spec.js';

/** Tests run at once, a few at a time: each opens several connections and child processes. */
const slot = slots(4);

const CONDA_STORE_TABLES = condaStoreProjections.flatMap((projection) => projection.tables);
const USAGE_TABLES = namespaceUsage.tables;
const NO_LEFTOVERS = { schemas: [], checkpoints: [] };

// ---------------------------------------------------------------------------------------------
// The log: about 1,600 events of a generated conda-store history. The first 80 % are in every
// test's log and projected live; the rest is what tests append during a rebuild ("any prefix of a
// generated history is a valid history").

const history = generatedHistory({ namespaces: 5, environmentsPerNamespace: 3, buildsPerEnvironment: 3, packages: 180, packageBuildsPerPackage: 5, seed: 'rebuild' });
const BASE = Math.floor(history.length * 0.8);
const base = history.slice(0, BASE);
const rest = history.slice(BASE);

const ownDatabases: string[] = [];
test.after.always(async () => {
  for (const name of ownDatabases) await dropDatabase(name);
});

function openLog(t: ExecutionContext, url: string): EventLog {
  const log = createPostgresEventLog({ connectionString: url });
  t.teardown(() => log.close());
  return log;
}

/** A database with `base` in its log and nothing projected. */
const seedDatabase = seededOnce(test, 'rebuild_seed_', async (url) => {
  const log = createPostgresEventLog({ connectionString: url });
  try {
    await appendInBatches(log, base);
  } finally {
    await log.close();
  }
});

interface Built {
  name: string;
  digests: Record<string, string>;
  checkpoints: LiveCheckpoint[];
  schema: SchemaSnapshot;
}

let built: Promise<Built> | undefined;
/** A database with `base` in its log, projected live by every projection (catch-up), and what it holds. */
function builtDatabase(t: ExecutionContext): Promise<Built> {
  built ??= (async () => {
    const db = await copyOf(undefined, await seedDatabase(t), 'rebuild_built_');
    ownDatabases.push(db.name);
    const log = createPostgresEventLog({ connectionString: db.url });
    try {
      await catchUp(db.url, log, { projections: allProjections, batchSize: 500 });
    } finally {
      await log.close();
    }
    return withDatabase(db.url, async (client) => ({
      name: db.name,
      digests: await digests(client),
      checkpoints: await liveCheckpoints(client),
      schema: await schemaSnapshot(client),
    }));
  })();
  return built;
}

/** A slot, then a copy of the built database for this test, and a client on it. */
async function builtCopy(t: ExecutionContext) {
  await slot(t);
  const reference = await builtDatabase(t);
  const db = await copyOf(t, reference.name);
  return { reference, db, client: await connect(t, db.url) };
}

let fullReference: Promise<Record<string, string>> | undefined;
/** The digests of a clean projection of the whole history (`base` then `rest`), computed once. */
function referenceOfWholeHistory(t: ExecutionContext): Promise<Record<string, string>> {
  fullReference ??= (async () => {
    const db = await copyOf(undefined, await seedDatabase(t), 'rebuild_ref_');
    try {
      const log = createPostgresEventLog({ connectionString: db.url });
      try {
        await appendInBatches(log, rest);
        await catchUp(db.url, log, { projections: allProjections, batchSize: 500 });
      } finally {
        await log.close();
      }
      return await withDatabase(db.url, digests);
    } finally {
      await dropDatabase(db.name);
    }
  })();
  return fullReference;
}

/** After a full rebuild or catch-up: every live projection running at the head, without an error. */
async function assertAllAtHead(t: ExecutionContext, client: Queryable) {
  const head = await headOf(client);
  const rows = await liveCheckpoints(client);
  t.deepEqual(
    rows.map(({ name, position, state, error }) => ({ name, position, state, error })),
    allProjections
      .map((p) => p.name)
      .sort()
      .map((name) => ({ name, position: head, state: 'running', error: null })),
    'every live checkpoint at the head',
  );
}

/**
 * Later migrations that change only the log's own schema (`event_store`: its functions and
 * tables). This release's code calls them, so a database of an older release, simulated below and
 * then written to by this release's code, has them; its projection tables are the older ones.
 */
const LOG_MIGRATIONS = ['_ingestion.ts', '_cheaper_key_claims.ts', '_checkpoint_guard.ts', '_read_bound_function.ts', '_precondition_index_probes.ts', '_read_bound_without_locks_when_idle.ts', '_claims_of_the_same_stream.ts', '_key_preconditions_with_holder.ts'];

/**
 * Applies the Knex migrations one by one, up to (not including) `before`, as a database of an
 * older release had them, and the later ones of the log (LOG_MIGRATIONS).
 */
async function migrateUpTo(url: string, before: string): Promise<string[]> {
  await prepareDatabase(url);
  const knex = knexFactory(knexConfig(url));
  const applied: string[] = [];
  try {
    const [, pending] = (await knex.migrate.list()) as [unknown[], Array<string | { file: string }>];
    const files = pending.map((migration) => (typeof migration === 'string' ? migration : migration.file)).sort();
    for (const file of files) {
      if (file >= before && !LOG_MIGRATIONS.some((suffix) => file.endsWith(suffix))) continue;
      await knex.migrate.up({ name: file });
      applied.push(file);
    }
    return applied;
  } finally {
    await knex.destroy();
  }
}

/** The migration file whose name ends so, read from the migrations directory (others may be added before it). */
function migrationNamed(suffix: string): string {
  const file = fs.readdirSync(path.join(root, 'migrations')).find((name) => name.endsWith(suffix));
  if (!file) throw new Error(`no migration *${suffix} in migrations/`);
  return file;
}

const shadowPosition = async (client: Queryable) => {
  const { rows } = await client.query<{ position: number }>(`SELECT coalesce(max(position), 0)::float8 AS position FROM event_store.projections WHERE name LIKE 'rebuild:%'`);
  return rows[0]!.position;
};

// ---------------------------------------------------------------------------------------------
// 1. Equivalence

test('rebuild-projections --all: every table identical, row for row and id for id, and defined exactly as before', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  // A privilege a reader's role relies on: the swapped-in tables keep it. (Not a reason to rebuild.)
  await client.query('GRANT SELECT ON public.build, public.namespace_usage TO PUBLIC; GRANT USAGE ON SEQUENCE public.build_id_seq TO PUBLIC');
  const before = await schemaSnapshot(client);
  t.notDeepEqual(before.privileges, reference.schema.privileges, 'the grants show in the snapshot');
  const oidsBefore = await tableOids(client, PROJECTION_TABLES);

  const result = await runRebuild(db.url, ['--all', '--batch-size', '500']);
  t.is(result.code, 0, shown(result));
  t.regex(result.stdout, /rebuilt group conda-store/, shown(result));
  t.regex(result.stdout, /rebuilt group namespace_usage/, shown(result));

  t.deepEqual(await digests(client), reference.digests, 'rows, ids and sequences as live projection left them');
  t.deepEqual(await schemaSnapshot(client), before, 'columns, constraints, indexes, sequences, owners and privileges');
  for (const table of condaStoreTableNames) {
    t.deepEqual(await describeTable(client, 'public', table), condaStoreTables[table], `${table} is still as test/schema/conda-store-spec.ts has it`);
  }
  t.deepEqual(await sequencesBehindMaxId(client), [], 'every id sequence still hands out ids past max(id)');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  const oidsAfter = await tableOids(client, PROJECTION_TABLES);
  t.deepEqual(
    PROJECTION_TABLES.filter((table) => oidsAfter[table] === oidsBefore[table]),
    [],
    'every table was swapped for a rebuilt one',
  );
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints, 'checkpoints at the head, same fingerprints (the definitions did not change)');
});

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL at several points, and SIGINT

const killPoints = [
  { what: 'during the fill', pauseAt: undefined, appendWhileStopped: false },
  { what: 'after the fill and the index build, before the catch-up, with events appended meanwhile', pauseAt: 'finished', appendWhileStopped: true },
  { what: 'inside the swap transaction, just before it commits', pauseAt: 'swapping', appendWhileStopped: false },
] as const;

for (const point of killPoints) {
  test(`SIGKILL ${point.what}: live tables, checkpoints and fingerprints unchanged and readable; the next run cleans up and succeeds`, async (t) => {
    const { reference, db, client } = await builtCopy(t);

    const running = point.pauseAt
      ? startRebuild(t, db.url, ['--all'], { CSE_REBUILD_PAUSE_AT: point.pauseAt })
      : startRebuild(t, db.url, ['--all', '--batch-size', '2']);
    const alive = () => {
      if (running.hasExited()) throw new Error(`the rebuild exited before it was killed\n${running.output()}`);
    };
    if (point.pauseAt) {
      await until(() => `the rebuild to pause at ${point.pauseAt}\n${running.output()}`, () => (alive(), running.pausedAt() === point.pauseAt));
    } else {
      // As soon as the shadow checkpoint moves: a batch or two into a fill of about 650 batches
      // (of 20 events, a stall of the test's process of about a second let the fill end first).
      await until(() => `the shadow checkpoint to move\n${running.output()}`, async () => (alive(), (await shadowPosition(client)) > 0));
    }
    if (point.appendWhileStopped) await appendInBatches(openLog(t, db.url), rest);
    running.child.kill('SIGKILL');
    t.is((await running.exited).signal, 'SIGKILL');
    await noRebuildRunning(client);
    if (!point.pauseAt) t.true((await shadowPosition(client)) < BASE, 'killed in the middle of the fill');

    t.deepEqual(await digests(client), reference.digests, 'live tables unchanged and readable');
    t.deepEqual(await liveCheckpoints(client), reference.checkpoints, 'live checkpoints and fingerprints unchanged');
    t.deepEqual(await schemaSnapshot(client), reference.schema, 'live table definitions unchanged');

    const next = await runRebuild(db.url, ['--all']);
    t.is(next.code, 0, shown(next));
    t.deepEqual(await leftovers(client), NO_LEFTOVERS, 'no shadow schema or shadow checkpoint left');
    t.deepEqual(await digests(client), point.appendWhileStopped ? await referenceOfWholeHistory(t) : reference.digests, 'the tables of a clean projection of the log');
    t.deepEqual(await schemaSnapshot(client), reference.schema);
    await assertAllAtHead(t, client);
  });
}

test('SIGINT (Ctrl-C) during a rebuild: exits non-zero, everything as it was, nothing left behind', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const running = startRebuild(t, db.url, ['--all'], { CSE_REBUILD_PAUSE_AT: 'filled' });
  await until(() => `the rebuild to pause\n${running.output()}`, () => running.pausedAt() === 'filled' || (running.hasExited() && 'exited'));
  t.is(running.pausedAt(), 'filled', running.output());
  running.child.kill('SIGINT');
  await until(() => `the rebuild to exit on SIGINT\n${running.output()}`, () => running.hasExited(), 30_000);
  const { code } = await running.exited;
  t.is(code, 2, running.output());
  t.regex(running.output(), /interrupted/);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS, 'the shadow tables and checkpoints are dropped on the way out');
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
});

// ---------------------------------------------------------------------------------------------
// 3. Readers during a rebuild

test('a reader querying in a loop during a rebuild sees the complete old tables, then the complete new ones, and no error', async (t) => {
  const { db, client: reader } = await builtCopy(t);

  const counted = ['conda_package_build', 'build', 'build_artifact', 'environment', 'namespace', 'specification', 'solve_conda_package_build', 'namespace_usage'];
  const countSql = (table: string) => `SELECT count(*)::int AS n, max(tableoid::text) AS oid FROM public."${table}"`;
  const joinSql = `SELECT count(*)::int AS n FROM build b JOIN environment e ON e.id = b.environment_id JOIN namespace n ON n.id = e.namespace_id
                    JOIN build_conda_package_build l ON l.build_id = b.id JOIN conda_package_build p ON p.id = l.conda_package_build_id`;
  const checksummed = ['conda_package_build', 'namespace_usage'];
  const expected = new Map<string, unknown>();
  for (const table of counted) expected.set(`count ${table}`, (await reader.query<{ n: number }>(countSql(table))).rows[0]!.n);
  expected.set('join', (await reader.query<{ n: number }>(joinSql)).rows[0]!.n);
  for (const table of checksummed) expected.set(`checksum ${table}`, (await reader.query<{ checksum: string }>(checksumSql(table))).rows[0]!.checksum);
  t.true((expected.get('count conda_package_build') as number) > 500);

  const errors: string[] = [];
  const wrong: string[] = [];
  const oids = new Map<string, Set<string>>(counted.map((table) => [table, new Set<string>()]));
  let rounds = 0;
  const observe = (what: string, value: unknown) => {
    if (value !== expected.get(what)) wrong.push(`${what}: ${String(value)}, expected ${String(expected.get(what))}`);
  };
  const round = async () => {
    for (const table of counted) {
      try {
        const { rows } = await reader.query<{ n: number; oid: string }>(countSql(table));
        observe(`count ${table}`, rows[0]!.n);
        oids.get(table)!.add(rows[0]!.oid);
      } catch (error) {
        errors.push(`${table}: ${(error as Error).message}`);
      }
    }
    try {
      observe('join', (await reader.query<{ n: number }>(joinSql)).rows[0]!.n);
      for (const table of checksummed) observe(`checksum ${table}`, (await reader.query<{ checksum: string }>(checksumSql(table))).rows[0]!.checksum);
    } catch (error) {
      errors.push(`join/checksum: ${(error as Error).message}`);
    }
    rounds++;
  };

  let stop = false;
  const loop = (async () => {
    while (!stop) await round();
  })();
  const running = startRebuild(t, db.url, ['--all', '--batch-size', '200']);
  try {
    await until(() => `the rebuild to finish\n${running.output()}`, () => running.hasExited());
  } finally {
    stop = true;
    await loop;
  }
  await round();
  t.is((await running.exited).code, 0, running.output());
  t.deepEqual(errors, [], 'no query failed');
  t.deepEqual(wrong, [], 'every count and checksum is the full table');
  for (const [table, seen] of oids) t.is(seen.size, 2, `${table}: the reader saw the old table, then the new one`);
  t.true(rounds > 3, `${rounds} rounds`);
});

// ---------------------------------------------------------------------------------------------
// 4. Events appended during a rebuild

/**
 * Rebuilds both groups in this process while `rest` is appended: a quarter in the background from
 * the start, then a slice at each phase boundary of the conda-store group's rebuild (after the
 * fill, after the index build, at the swap), the last slice after the rebuild. With `serve`, the
 * live projection keeps applying them meanwhile (and is waited for at the first two boundaries,
 * so that it is ahead of the shadow tables when they are swapped in).
 */
async function rebuildWhileAppending(t: ExecutionContext, withServe: boolean) {
  const { db, client } = await builtCopy(t);
  const log = openLog(t, db.url);

  const cut = (fraction: number) => Math.floor(rest.length * fraction);
  const [background, atFilled, atFinished, atSwap, after] = [
    rest.slice(0, cut(0.25)),
    rest.slice(cut(0.25), cut(0.5)),
    rest.slice(cut(0.5), cut(0.7)),
    rest.slice(cut(0.7), cut(0.85)),
    rest.slice(cut(0.85)),
  ];
  let queue: Promise<unknown> = Promise.resolve();
  const append = (envelopes: Envelope[]) => {
    queue = queue.then(() => appendInBatches(log, envelopes, 20));
    void queue.catch(() => undefined); // awaited below; handled now in case a wait fails first
    return queue;
  };

  const liveAtHead = async () => {
    const head = await headOf(client);
    const rows = await liveCheckpoints(client);
    return rows.length === allProjections.length && rows.every((row) => row.position >= head);
  };
  const stopServe = new AbortController();
  let serving: Promise<void> | undefined;
  if (withServe) {
    const service = createProjectionService({ databaseUrl: db.url, log, logger: silentLogger, projections: allProjections, batchSize: 50 });
    serving = service.serve(stopServe.signal).finally(() => service.close());
    t.teardown(async () => {
      stopServe.abort();
      await serving?.catch(() => undefined);
    });
    await until('serve to take the groups', liveAtHead);
  }

  for (let i = 0; i < background.length; i += 20) void append(background.slice(i, i + 20));
  const phases: string[] = [];
  const onPhase = async (phase: 'filled' | 'finished' | 'swapping') => {
    phases.push(phase);
    if (phase === 'filled' || phase === 'finished') {
      await append(phase === 'filled' ? atFilled : atFinished);
      if (withServe) await until(`serve to apply what was appended at ${phase}`, liveAtHead);
    } else {
      await append(atSwap);
    }
  };
  const rebuildLog = openLog(t, db.url);
  const groups = [condaStoreProjections, [namespaceUsage]];
  for (const [i, projections] of groups.entries()) {
    await rebuildGroup({ databaseUrl: db.url, log: rebuildLog, logger: silentLogger, projections, batchSize: 100, onPhase: i === 0 ? onPhase : undefined });
  }
  t.deepEqual(phases, ['filled', 'finished', 'swapping']);
  await append(after);
  await queue;

  if (withServe) {
    await until('serve to apply every event', liveAtHead);
    stopServe.abort();
    await serving;
  } else {
    await catchUp(db.url, log, { projections: allProjections });
  }
  t.deepEqual(await digests(client), await referenceOfWholeHistory(t), 'the tables of a clean projection of the whole log');
  await assertAllAtHead(t, client);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
}

test('events appended during a rebuild (fill, index build, swap) all reach the swapped-in tables; catch-up applies the rest', (t) => rebuildWhileAppending(t, false));

test('a serve running across the swap keeps working: every event appended before, during and after is applied once', (t) => rebuildWhileAppending(t, true));

// ---------------------------------------------------------------------------------------------
// 5. Fingerprints

test('fingerprints: nothing to rebuild on a built database; a new version or a changed table plans exactly that group; empty again after', async (t) => {
  const { db, client } = await builtCopy(t);

  const bare = await runRebuild(db.url, ['--dry-run']);
  t.is(bare.code, 0, shown(bare));
  t.regex(bare.stdout, /nothing to rebuild/);
  t.deepEqual(await planRebuild(db.url, allProjections, [], false), []);

  // A new version of one projection's handlers: that projection's group, and only it.
  const next = namespaceUsage.version + 1;
  const usageNext = defineProjection({ ...namespaceUsage, version: next });
  const withNext = allProjections.map((p) => (p.name === namespaceUsage.name ? usageNext : p));
  t.deepEqual(await planRebuild(db.url, withNext, [], false), [{ group: 'namespace_usage', projections: [{ name: 'namespace_usage', reason: `version v${next - 1} -> v${next}` }] }]);

  // A migration-like change to one of its tables.
  await client.query('ALTER TABLE public.namespace_usage ADD COLUMN x integer');
  t.deepEqual(await planRebuild(db.url, allProjections, [], false), [
    { group: 'namespace_usage', projections: [{ name: 'namespace_usage', reason: 'table definition changed' }] },
  ]);
  const digestsBefore = await digests(client);
  const oidsBefore = await tableOids(client, PROJECTION_TABLES);
  const dryRun = await runRebuild(db.url, ['--dry-run']);
  t.is(dryRun.code, 0, shown(dryRun));
  t.is(dryRun.stdout, 'would rebuild group namespace_usage:\n  namespace_usage: table definition changed\n');
  t.deepEqual(await tableOids(client, PROJECTION_TABLES), oidsBefore, '--dry-run changes nothing');

  const rebuilt = await runRebuild(db.url, []);
  t.is(rebuilt.code, 0, shown(rebuilt));
  t.regex(rebuilt.stdout, /rebuilt group namespace_usage/);
  t.notRegex(rebuilt.stdout, /conda-store/);
  const oidsAfter = await tableOids(client, PROJECTION_TABLES);
  t.deepEqual(
    PROJECTION_TABLES.filter((table) => oidsAfter[table] !== oidsBefore[table]),
    [...USAGE_TABLES].sort(),
    'only the namespace_usage group was rebuilt',
  );
  t.deepEqual(await digests(client), digestsBefore, 'same rows (the new column null)');
  t.true((await describeTable(client, 'public', 'namespace_usage')).columns.some((column) => column.name === 'x'), 'the rebuilt table has the new column');
  t.deepEqual(await planRebuild(db.url, allProjections, [], false), []);
  const after = await runRebuild(db.url, ['--dry-run']);
  t.regex(after.stdout, /nothing to rebuild/, shown(after));

  // Built by a newer release (a higher version in its fingerprint): left alone unless named, so
  // that an older release does not rebuild it with its older handlers under the newer processes.
  await client.query('UPDATE event_store.projections SET fingerprint = $2 WHERE name = $1', [namespaceUsage.name, `v${namespaceUsage.version + 1}:0123456789abcdef`]);
  const skipped: string[] = [];
  t.deepEqual(await planRebuild(db.url, allProjections, [], false, (name, why) => skipped.push(`${name}: ${why}`)), []);
  t.deepEqual(skipped, [`namespace_usage: built by a newer release (version ${namespaceUsage.version + 1}; this release has version ${namespaceUsage.version}): name it to rebuild it with this release's handlers`]);
  const older = await runRebuild(db.url, ['--dry-run']);
  t.is(older.code, 0, shown(older));
  t.regex(older.stdout, /nothing to rebuild/);
  t.is(older.stderr, `skipped ${skipped[0]}\n`);
  t.deepEqual(await planRebuild(db.url, allProjections, ['namespace_usage'], false), [
    { group: 'namespace_usage', projections: [{ name: 'namespace_usage', reason: 'named on the command line' }] },
  ]);
});

// Regression (found by a review): the group of a projection passed over as built by a newer
// release was still rebuilt when another of its projections had changed, and that one with it,
// downgraded to this release's handlers under the newer release's processes.
test('regression: a group with a projection a newer release built is not rebuilt for a change of another of its projections', async (t) => {
  const { db, client } = await builtCopy(t);
  const builds = condaStoreProjections.find((p) => p.name === 'builds')!;
  await client.query('UPDATE event_store.projections SET fingerprint = $2 WHERE name = $1', [builds.name, `v${builds.version + 1}:0123456789abcdef`]);
  await client.query('CREATE INDEX namespace_name_idx ON public.namespace (name)');
  const skipped: string[] = [];
  t.deepEqual(await planRebuild(db.url, allProjections, [], false, (name, why) => skipped.push(`${name}: ${why}`)), []);
  t.deepEqual(skipped, [
    `builds: built by a newer release (version ${builds.version + 1}; this release has version ${builds.version}): name it to rebuild it with this release's handlers`,
    "namespaces: table definition changed, but it shares foreign keys with builds, built by a newer release: name them to rebuild the group with this release's handlers",
  ]);
  const dryRun = await runRebuild(db.url, ['--dry-run']);
  t.is(dryRun.code, 0, shown(dryRun));
  t.regex(dryRun.stdout, /nothing to rebuild/);
  // Named, the group is rebuilt (a deliberate downgrade).
  t.deepEqual((await planRebuild(db.url, allProjections, ['builds'], false)).map((entry) => entry.group), ['conda-store']);
});

// Regression (found by a review): what a killed rebuild left (after its swap committed, a full copy
// of the old tables) was dropped only by the next rebuild of that very group, for good if none came
// (a kill after the swap leaves nothing to rebuild).
test('every rebuild-projections drops what a killed rebuild left of a group no rebuild runs for, even with nothing to rebuild', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  await client.query(`
    CREATE SCHEMA rebuild_old_conda_store; CREATE TABLE rebuild_old_conda_store.build (id integer);
    CREATE SCHEMA rebuild_conda_store; CREATE TABLE rebuild_conda_store.solve (id integer);
    INSERT INTO event_store.projections (name, position) VALUES ('rebuild:solves', 3)`);
  const left = 'what a killed rebuild of group conda-store left: rebuild:solves, rebuild_conda_store, rebuild_old_conda_store\n';
  const dryRun = await runRebuild(db.url, ['--dry-run']);
  t.is(dryRun.code, 0, shown(dryRun));
  t.is(dryRun.stdout, `would drop ${left}nothing to rebuild: every projection matches its recorded fingerprint\n`);
  t.is((await leftovers(client)).schemas.length, 2, 'a dry run drops nothing');
  const run = await runRebuild(db.url, []);
  t.is(run.code, 0, shown(run));
  t.is(run.stdout, `dropped ${left}nothing to rebuild: every projection matches its recorded fingerprint\n`);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  t.deepEqual(await digests(client), reference.digests);

  // A group being rebuilt elsewhere keeps its schemas: they are that rebuild's.
  const running = startRebuild(t, db.url, ['builds'], { CSE_REBUILD_PAUSE_AT: 'filled' });
  await until(() => `the rebuild of conda-store to pause\n${running.output()}`, () => running.pausedAt() === 'filled' || (running.hasExited() && 'exited'));
  const again = await runRebuild(db.url, ['namespace_usage']);
  t.is(again.code, 0, shown(again));
  t.notRegex(again.stdout, /dropped/);
  t.true((await leftovers(client)).schemas.includes('rebuild_conda_store'), 'the running rebuild\'s shadow tables stay');
});

// Regression (found by a review): every group of a run reported the events read for all of them.
test('a rebuild of several groups reports for each the events of its own types it applied, and its rows', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  const groups = [condaStoreProjections, [namespaceUsage]];
  // The keys and indexes added after the load report their progress too (minutes on a large log,
  // without a word before 2026-12-07), one step each, per group.
  const indexSteps = new Map<string, string[]>();
  const onProgress = ({ phase, group, detail }: { phase: string; group?: string; detail?: string }) => {
    if (phase === 'indexes') indexSteps.set(group!, [...(indexSteps.get(group!) ?? []), detail!]);
  };
  const reports = await rebuildGroups({ databaseUrl: db.url, log, logger: silentLogger, groups, batchSize: 100, onProgress });
  t.true((indexSteps.get('conda-store') ?? []).length > 10, 'conda-store: index progress');
  for (const steps of indexSteps.values()) t.deepEqual(steps, steps.map((_, i) => `${i + 1} of ${steps.length} keys and indexes`));
  const typesOf = (projections: ProjectionDefinition[]) => new Set(projections.flatMap((p) => Object.keys(p.handlers)));
  t.deepEqual(reports.map((report) => report.events), groups.map((projections) => base.filter((e) => typesOf(projections).has(e.type)).length));
  t.true(reports[1]!.events < reports[0]!.events);
  const { rows: [usage] } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM public.namespace_usage');
  t.is(reports[1]!.rows.namespace_usage, usage!.n);
  t.deepEqual(await digests(client), reference.digests);
});

// Regression (found by a review): groups whose names differ only where the schema names replace
// characters, or past PostgreSQL's 63 bytes, shared their rebuild schemas (their locks differ).
test('groups that would share a rebuild schema are refused, naming both', (t) => {
  t.throws(() => refuseSharedSchemaNames(['conda-store', 'conda_store']), {
    message: 'projection groups "conda-store" and "conda_store" would share the rebuild schema rebuild_conda_store: give one of them another name',
  });
  t.throws(() => refuseSharedSchemaNames([`${'a'.repeat(60)}x`, `${'a'.repeat(60)}y`]), { message: /would share the rebuild schema rebuild_a+:/ });
  t.notThrows(() => refuseSharedSchemaNames([...groupsOf(allProjections).keys()]));
});

// ---------------------------------------------------------------------------------------------
// 6. One rebuild of a group at a time

test('a second rebuild of a group that is being rebuilt is refused with a clear message; another group is not held up', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const first = startRebuild(t, db.url, ['builds'], { CSE_REBUILD_PAUSE_AT: 'filled' });
  await until(() => `the first rebuild to pause\n${first.output()}`, () => first.pausedAt() === 'filled' || (first.hasExited() && 'exited'));
  t.is(first.pausedAt(), 'filled', first.output());

  const log = openLog(t, db.url);
  const error = await t.throwsAsync(rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: condaStoreProjections }), { instanceOf: RebuildInProgressError });
  t.regex(error!.message, /rebuild of projection group "conda-store" is already running/);

  const second = await runRebuild(db.url, ['solves']);
  t.is(second.code, 2, shown(second));
  t.regex(second.stderr, /error: a rebuild of projection group "conda-store" is already running in another process/);

  const other = await runRebuild(db.url, ['namespace_usage']);
  t.is(other.code, 0, shown(other));
  t.regex(other.stdout, /rebuilt group namespace_usage/);

  first.child.kill('SIGKILL');
  await first.exited;
  await noRebuildRunning(client);
  t.deepEqual(await digests(client), reference.digests);
});

// ---------------------------------------------------------------------------------------------
// 7. The README's worked examples, as a maintainer runs them

const README = fs.readFileSync(path.join(root, 'README.md'), 'utf8');

/**
 * The commands of the first console block after `heading` in the README, each with the lines it
 * shows as its output: the examples' text is what the tests below see, not a copy that ages
 * (the migration counts in it went stale as migrations were added).
 */
function readmeConsole(heading: string): (command: string) => string {
  const at = README.indexOf(heading);
  const start = README.indexOf('```console\n', at);
  if (at < 0 || start < 0) throw new Error(`README.md: no console block after ${heading}`);
  const block = README.slice(start + '```console\n'.length, README.indexOf('```\n', start + 3));
  const commands = new Map<string, string>();
  let command = '';
  for (const line of block.split('\n').slice(0, -1)) {
    if (line.startsWith('$ ')) commands.set((command = line.slice(2)), '');
    else commands.set(command, `${commands.get(command)}${line}\n`);
  }
  return (command) => {
    const output = commands.get(command);
    if (output === undefined) throw new Error(`README.md: no \`$ ${command}\` in the console block after ${heading}`);
    return output;
  };
}

/**
 * What `knex migrate:latest` prints on a database that one `migrate:latest` of an older release
 * migrated up to (not including) `migration`: every migration from it on, as the second batch.
 * (The tests' simulated databases differ: migrateUpTo applies one migration per batch, and the
 * log's later migrations early.)
 */
function upgradeFrom(migration: string): string {
  const count = fs.readdirSync(path.join(root, 'migrations')).filter((file) => file.endsWith('.ts') && file >= migration).length;
  return `Batch 2 run: ${count} migrations\n`;
}

/** Asserts that the README quotes `file` (a path from the project's root) whole. */
function assertQuoted(t: ExecutionContext, file: string): void {
  t.true(README.includes(`\`\`\`ts\n${fs.readFileSync(path.join(root, file), 'utf8')}\`\`\`\n`), `README.md quotes ${file} whole`);
}

/** specifications as the release before is_lockfile had it (version 1: no is_lockfile). */
const specificationsV1 = defineProjection({
  ...specifications,
  version: 1,
  handlers: {
    SpecificationRegistered: ({ data }) => [
      {
        op: 'insert',
        table: 'specification',
        row: { id: data.specification_id, name: data.name, spec: data.spec, sha256: data.sha256, created_on: data.created_on ?? null },
      },
    ],
  },
});

/**
 * `npx rebuild-projections` runs this package's own bin, which npm first installs into its npx
 * cache (a link to the checkout, in a folder named after the checkout's path) at the first call
 * from a checkout. Two first calls at once, the two worked examples', made that folder together,
 * and the slower one failed on it (ENOENT; a fresh clone in CI): done once, before their calls.
 */
let npxInstall: Promise<CliResult> | undefined;
async function npxInstalled(t: ExecutionContext): Promise<void> {
  npxInstall ??= runNpx('', ['rebuild-projections', '--help'], 600_000);
  const installed = await npxInstall;
  t.is(installed.code, 0, shown(installed));
}

test('worked example 1: specification.is_lockfile as a Knex migration plus rebuild-projections, from a database built without it', async (t) => {
  await slot(t);
  await npxInstalled(t);
  const readme = readmeConsole('### Worked example 1');
  assertQuoted(t, 'projections/specifications.ts');
  assertQuoted(t, 'migrations/20260101000350_specification_is_lockfile.ts');
  const lockfileMigration = migrationNamed('_specification_is_lockfile.ts');
  const db = await freshDatabase(t, { migrated: false });
  const applied = await migrateUpTo(db.url, lockfileMigration);
  t.true(applied.length >= 3 && !applied.includes(lockfileMigration), applied.join(', '));
  const events = realisticHistory();
  const log = openLog(t, db.url);
  await appendEnvelopes(log, events);
  const previousRelease: ProjectionDefinition[] = condaStoreProjections.map((p) => (p.name === specifications.name ? specificationsV1 : p));
  await catchUp(db.url, log, { projections: previousRelease });
  const client = await connect(t, db.url);
  const hasColumn = async () =>
    (await client.query(`SELECT 1 FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'specification' AND column_name = 'is_lockfile'`)).rowCount === 1;
  t.false(await hasColumn());

  // 1-2. The projection change and the migration are in the checkout; apply the migration.
  const migrate = await runNpx(db.url, ['knex', 'migrate:latest']);
  t.is(migrate.code, 0, shown(migrate));
  t.regex(migrate.stdout, /^Batch \d+ run: \d+ migrations\n$/);
  t.is(readme('npx knex migrate:latest'), upgradeFrom(lockfileMigration), 'what migrate:latest prints on a database of the release before');
  t.true(await hasColumn());
  const lockfileColumn = async () => (await client.query<{ id: number; is_lockfile: boolean }>('SELECT id, is_lockfile FROM specification ORDER BY id')).rows;
  t.true((await lockfileColumn()).every((row) => !row.is_lockfile), 'after the migration alone, every row has the default, false');

  // 3. What a bare rebuild would do, and why.
  const dryRun = await runNpx(db.url, ['rebuild-projections', '--dry-run']);
  t.is(dryRun.code, 0, shown(dryRun));
  t.is(dryRun.stdout, readme('npx rebuild-projections --dry-run'));

  // 4. The rebuild.
  const rebuild = await runNpx(db.url, ['rebuild-projections']);
  t.is(rebuild.code, 0, shown(rebuild));
  const expected = events.flatMap((e) => (e.type === 'SpecificationRegistered' ? [{ id: e.data.specification_id, is_lockfile: e.data.is_lockfile }] : []));
  t.true(expected.some((row) => row.is_lockfile) && expected.some((row) => !row.is_lockfile));
  t.deepEqual(await lockfileColumn(), expected, 'is_lockfile true exactly for the lockfile specifications');
  t.deepEqual(await namespaceUsageRows(client), expectedNamespaceUsage(events));

  // The same tables as the current code projects the same log into a database migrated at once.
  const fresh = await freshDatabase(t);
  const freshLog = openLog(t, fresh.url);
  await appendEnvelopes(freshLog, events);
  await catchUp(fresh.url, freshLog, { projections: allProjections });
  t.deepEqual(await digests(client), await withDatabase(fresh.url, digests));

  const again = await runNpx(db.url, ['rebuild-projections', '--dry-run']);
  t.regex(again.stdout, /nothing to rebuild/, shown(again));
});

test('worked example 2: namespace_usage, a new read model, complete for all past events after migrate:latest and rebuild-projections', async (t) => {
  await slot(t);
  await npxInstalled(t);
  const readme = readmeConsole('### Worked example 2');
  assertQuoted(t, 'migrations/20260101000500_namespace_usage.ts');
  const usageMigration = migrationNamed('_namespace_usage.ts');
  const db = await freshDatabase(t, { migrated: false });
  await migrateUpTo(db.url, usageMigration);
  const shape = { namespaces: 5, environmentsPerNamespace: 2, buildsPerEnvironment: 3 };
  const events = generatedHistory({ ...shape, packages: 30, packageBuildsPerPackage: 2, seed: 'usage' });
  const log = openLog(t, db.url);
  await appendInBatches(log, events);
  // The release before namespace_usage existed projected conda-store's tables only.
  await catchUp(db.url, log, { projections: condaStoreProjections });
  const client = await connect(t, db.url);
  const condaStoreBefore = await tableOids(client, CONDA_STORE_TABLES);

  const migrate = await runNpx(db.url, ['knex', 'migrate:latest']);
  t.is(migrate.code, 0, shown(migrate));
  t.regex(migrate.stdout, /^Batch \d+ run: \d+ migrations\n$/);
  t.is(readme('npx knex migrate:latest'), upgradeFrom(usageMigration), 'what migrate:latest prints on a database of the release before');
  t.deepEqual(await namespaceUsageRows(client), [], 'the migration creates the table empty');

  const dryRun = await runNpx(db.url, ['rebuild-projections', '--dry-run']);
  t.is(dryRun.code, 0, shown(dryRun));
  t.is(dryRun.stdout, readme('npx rebuild-projections --dry-run'));

  const rebuild = await runNpx(db.url, ['rebuild-projections']);
  t.is(rebuild.code, 0, shown(rebuild));
  const rows = await namespaceUsageRows(client);
  // By hand: every namespace has 2 environments of 3 builds; completed builds and their sizes from the BuildCompleted events.
  t.deepEqual(rows.map((row) => row.namespace_id), [1, 2, 3, 4, 5]);
  t.true(rows.every((row) => row.builds === shape.environmentsPerNamespace * shape.buildsPerEnvironment));
  t.deepEqual(rows, expectedNamespaceUsage(events));
  t.true(rows.some((row) => row.completed_builds > 0 && row.total_size > 0));
  t.deepEqual(await tableOids(client, CONDA_STORE_TABLES), condaStoreBefore, "conda-store's tables were not rebuilt");
  await assertAllAtHead(t, client);

  const again = await runNpx(db.url, ['rebuild-projections', '--dry-run']);
  t.regex(again.stdout, /nothing to rebuild/, shown(again));
});

// ---------------------------------------------------------------------------------------------
// 8. The command line

test('rebuild-projections --help, an unknown name, and --dry-run that changes nothing', async (t) => {
  const { reference, db, client } = await builtCopy(t);

  const help = await runRebuild(db.url, ['--help']);
  t.is(help.code, 0, shown(help));
  t.regex(help.stdout, /Usage: rebuild-projections/);
  t.regex(help.stdout, /--dry-run/);

  const unknown = await runRebuild(db.url, ['no_such_projection']);
  t.is(unknown.code, 2, shown(unknown));
  t.regex(unknown.stderr, /unknown projection\(s\): no_such_projection/);
  for (const projection of allProjections) t.true(unknown.stderr.includes(projection.name), `lists ${projection.name}`);

  const oids = await tableOids(client, PROJECTION_TABLES);
  const all = await runRebuild(db.url, ['--all', '--dry-run']);
  t.is(all.code, 0, shown(all));
  t.regex(all.stdout, /would rebuild group conda-store:\n {2}namespaces: all projections asked for\n/);
  t.regex(all.stdout, /would rebuild group namespace_usage:\n {2}namespace_usage: all projections asked for\n/);
  const named = await runRebuild(db.url, ['solves', '--dry-run']);
  t.is(named.code, 0, shown(named));
  t.regex(named.stdout, /^would rebuild group conda-store:\n/);
  t.regex(named.stdout, /\n {2}solves: named on the command line\n/);
  t.regex(named.stdout, /\n {2}builds: shares foreign keys with solves\n/);
  t.notRegex(named.stdout, /namespace_usage/);

  t.deepEqual(await tableOids(client, PROJECTION_TABLES), oids);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// ---------------------------------------------------------------------------------------------
// 9. What the shadow tables must do as the live ones do, and rebuilds that must not happen

/** A projection of this test's own whose deletes rely on a cascading foreign key. */
const cascadeDemo = defineProjection({
  name: 'cascade_demo',
  version: 1,
  group: 'cascade_demo',
  tables: ['demo_namespace', 'demo_environment'],
  handlers: {
    NamespaceCreated: ({ data }) => [{ op: 'insert', table: 'demo_namespace', row: { id: data.namespace_id, name: data.name } }],
    EnvironmentCreated: ({ data }) => [{ op: 'insert', table: 'demo_environment', row: { id: data.environment_id, namespace_id: data.namespace_id } }],
    // The environment rows go with their namespace: ON DELETE CASCADE does it.
    NamespacePurged: ({ data }) => [{ op: 'delete', table: 'demo_namespace', where: { id: data.namespace_id } }],
  },
});

const demoRows = async (client: Queryable) =>
  (await client.query<{ rows: unknown }>(`SELECT json_build_array((SELECT json_agg(n ORDER BY n.id) FROM demo_namespace n), (SELECT json_agg(e ORDER BY e.id) FROM demo_environment e)) AS rows`)).rows[0]!.rows;

test('a delete that cascades live cascades during the rebuild too (cascading foreign keys exist during the load)', async (t) => {
  await slot(t);
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  await client.query(`
    CREATE TABLE public.demo_namespace (id integer PRIMARY KEY, name text NOT NULL);
    CREATE TABLE public.demo_environment (id integer PRIMARY KEY, namespace_id integer NOT NULL
      CONSTRAINT demo_environment_namespace_fkey REFERENCES public.demo_namespace (id) ON DELETE CASCADE)`);
  const log = openLog(t, db.url);
  const events = realisticHistory();
  await appendEnvelopes(log, events);
  t.true(events.some((e) => e.type === 'NamespacePurged' && e.data.namespace_id === 3), 'namespace 3, with an environment, is purged');
  await catchUp(db.url, log, { projections: [cascadeDemo] });
  const live = await demoRows(client);
  t.deepEqual(live, [
    [{ id: 1, name: 'default' }, { id: 2, name: 'data-team' }],
    [{ id: 1, namespace_id: 1 }, { id: 2, namespace_id: 2 }],
  ]);
  const definition = await describeTable(client, 'public', 'demo_environment');
  await rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [cascadeDemo], batchSize: 10 });
  t.deepEqual(await demoRows(client), live, 'the same rows as live projection');
  t.deepEqual(await describeTable(client, 'public', 'demo_environment'), definition, 'the foreign key, ON DELETE CASCADE, as before');
});

test('a row that breaks a unique constraint added after the load refuses the rebuild, naming the constraint; the live tables stay', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  t.true(base.filter((e) => e.type === 'SpecificationRegistered').length > 1, 'the history has several specifications');

  // A new version that gives every specification the same sha256: live, the projection would stop
  // at the second one; in a rebuild the key is only added after the load, and that fails.
  const sameSha = defineProjection({
    ...specifications,
    version: specifications.version + 1,
    handlers: {
      ...specifications.handlers,
      SpecificationRegistered: (event) =>
        specifications.handlers.SpecificationRegistered!(event).map((change) =>
          change.op === 'insert' ? { ...change, row: { ...change.row, sha256: '0'.repeat(64) } } : change),
    },
  });
  const projections = condaStoreProjections.map((p) => (p.name === specifications.name ? sameSha : p));
  const failure = await t.throwsAsync(rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections, batchSize: 50 }));
  t.regex(failure!.message, /the rebuilt tables of projection group "conda-store" break a unique constraint of the live tables: could not create unique index "specification_sha256_key" \(Key \(sha256\)=\(0{64}\) is duplicated\.\); the live tables, checkpoints and fingerprints are unchanged/);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS, 'the shadow tables are dropped on the way out');
});

test('refused rebuilds leave everything as it was: a projection that fails on an event, a foreign key from outside the group', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);

  // A new version whose handler throws on one event: the rebuild stops before the swap.
  const doomed = base.flatMap((e) => (e.type === 'BuildCompleted' ? [e.data.build_id] : []))[2]!;
  const failing = defineProjection({
    ...namespaceUsage,
    version: namespaceUsage.version + 1,
    handlers: {
      ...namespaceUsage.handlers,
      BuildCompleted: (event) => {
        if (event.data.build_id === doomed) throw new Error(`cannot handle build ${doomed}`);
        return namespaceUsage.handlers.BuildCompleted!(event);
      },
    },
  });
  const failure = await t.throwsAsync(rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [failing], batchSize: 50 }));
  t.regex(failure!.message, /projection namespace_usage stopped at event \d+ \(BuildCompleted [0-9a-f-]+\) during the rebuild: cannot handle build \d+; the live tables/);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS, 'the shadow tables are dropped on the way out');

  // A table of no projection's group that references namespace_usage: the swap would drop its foreign key.
  await client.query('CREATE TABLE public.usage_note (namespace_id integer CONSTRAINT usage_note_fkey REFERENCES public.namespace_usage (namespace_id))');
  const refused = await runRebuild(db.url, ['namespace_usage']);
  t.is(refused.code, 2, shown(refused));
  t.regex(refused.stderr, /cannot rebuild projection group "namespace_usage": public.usage_note references namespace_usage by foreign key usage_note_fkey/);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  t.is((await client.query(`SELECT 1 FROM pg_constraint WHERE conname = 'usage_note_fkey'`)).rowCount, 1);
});

// ---------------------------------------------------------------------------------------------
// What the swap must not undo or break (found by a review).

test('a view over a table of the group refuses the rebuild, naming it; the view and the live tables stay', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  await client.query('CREATE VIEW public.usage_report AS SELECT namespace_id, builds FROM public.namespace_usage');
  // A dry run says so too (it said "would rebuild" before), and exits 2 as the rebuild would.
  const dry = await runRebuild(db.url, ['namespace_usage', '--dry-run']);
  t.is(dry.code, 1, shown(dry));
  t.regex(dry.stdout, /^would rebuild group namespace_usage:\n/);
  t.regex(dry.stderr, /would be refused: cannot rebuild projection group "namespace_usage": view public\.usage_report reads namespace_usage/);
  const refused = await runRebuild(db.url, ['namespace_usage']);
  t.is(refused.code, 2, shown(refused));
  t.regex(refused.stderr, /cannot rebuild projection group "namespace_usage": view public\.usage_report reads namespace_usage, and would go on reading the old table after the swap/);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  t.is((await client.query('SELECT count(*)::int AS n FROM public.usage_report')).rows[0].n, (await namespaceUsageRows(client)).length);
});

// The dry run's check of a rebuild running looks at the lock and does not take it: a rebuild
// starting at that moment is not refused for it.
test('a dry run reports a rebuild of the group running in another process, without taking its lock', async (t) => {
  const { db, client } = await builtCopy(t);
  await client.query('SELECT pg_advisory_lock($1, hashtext($2))', [REBUILD_LOCK_CLASS, 'namespace_usage']);
  t.deepEqual(await rebuildRefusals(db.url, [condaStoreProjections, [namespaceUsage]]), [
    { group: 'namespace_usage', reason: 'a rebuild of projection group "namespace_usage" is already running in another process' },
  ]);
  await client.query('SELECT pg_advisory_unlock_all()');
  t.deepEqual(await rebuildRefusals(db.url, [condaStoreProjections, [namespaceUsage]]), []);
});

// Regression (the last note's leftovers, 2026-12-07): a role that owns the group's tables but may
// not create tables in schema public (PostgreSQL 15's default for all but the database's owner)
// filled the shadow tables, then failed at the swap: the whole fill lost, hours on a large log.
// And, found by this test: a rebuilding role that is a member of the tables' owner failed when it
// added the keys and indexes after the fill (checked as the tables' owner, who had no right on
// the shadow schema); the owners now get USAGE and CREATE on it.
test('a role that may not move the new tables into schema public is refused before the fill, as its dry run says; a member of the tables\' owner rebuilds them', async (t) => {
  const suffix = randomBytes(4).toString('hex');
  const owner = `cse_test_owner_${suffix}`;
  const rebuilder = `cse_test_rebuilder_${suffix}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${owner}; CREATE ROLE ${rebuilder} LOGIN IN ROLE ${owner}`));
  // Dropped after the database (teardowns run last to first), which holds what they own.
  t.teardown(() => withAdmin((admin) => admin.query(`DROP ROLE IF EXISTS ${rebuilder}; DROP ROLE IF EXISTS ${owner}`)));
  const { reference, db, client } = await builtCopy(t);
  const name = new URL(db.url).pathname.slice(1);
  await client.query(`
    ${namespaceUsage.tables.map((table) => `ALTER TABLE public.${table} OWNER TO ${owner};`).join('\n')}
    GRANT CONNECT, CREATE ON DATABASE "${name}" TO ${rebuilder};
    GRANT USAGE ON SCHEMA event_store TO ${rebuilder};
    GRANT ALL ON ALL TABLES IN SCHEMA event_store TO ${rebuilder};
    GRANT ALL ON ALL SEQUENCES IN SCHEMA event_store TO ${rebuilder};
    REVOKE CREATE ON SCHEMA public FROM PUBLIC`);
  const url = new URL(db.url);
  url.username = rebuilder;
  const log = openLog(t, url.toString());
  const refusal = `cannot rebuild projection group "namespace_usage": role ${rebuilder} may not create tables in schema public, which the swap moves the new tables into; ` +
    `GRANT CREATE ON SCHEMA public TO ${rebuilder}; the live tables, checkpoints and fingerprints are unchanged`;
  t.deepEqual(await rebuildRefusals(url.toString(), [[namespaceUsage]]), [{ group: 'namespace_usage', reason: refusal }]);
  let filled = false;
  await t.throwsAsync(rebuildGroup({ databaseUrl: url.toString(), log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase: () => void (filled = true) }), { instanceOf: RebuildRefusedError, message: refusal });
  t.false(filled, 'refused before the fill');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);

  // Granted, the same role rebuilds the group.
  await client.query(`GRANT CREATE ON SCHEMA public TO ${rebuilder}`);
  t.deepEqual(await rebuildRefusals(url.toString(), [[namespaceUsage]]), []);
  await rebuildGroup({ databaseUrl: url.toString(), log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50 });
  t.deepEqual(await digests(client), reference.digests);
});

// Regression: DROP SCHEMA ... CASCADE of the old tables dropped whatever depended on them besides
// views, without a word: a SQL-body function, a policy of another table (which then, with
// row-level security on and no policy, showed no row).
test('a function or another table\'s policy that depends on a group table refuses the rebuild, naming it, and survives', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  await client.query('CREATE FUNCTION public.usage_total() RETURNS bigint LANGUAGE sql STABLE BEGIN ATOMIC SELECT sum(total_size) FROM public.namespace_usage; END');
  const refused = await runRebuild(db.url, ['namespace_usage']);
  t.is(refused.code, 2, shown(refused));
  t.regex(refused.stderr, /cannot rebuild projection group "namespace_usage": function usage_total\(\) depends on namespace_usage, and would go on using the old table/);
  await client.query('DROP FUNCTION public.usage_total()');
  await client.query(`CREATE TABLE public.other (id int); ALTER TABLE public.other ENABLE ROW LEVEL SECURITY;
    CREATE POLICY seen ON public.other USING (EXISTS (SELECT 1 FROM public.namespace_usage WHERE namespace_id = other.id))`);
  const again = await runRebuild(db.url, ['namespace_usage']);
  t.is(again.code, 2, shown(again));
  t.regex(again.stderr, /policy seen on table other depends on namespace_usage/);
  t.is((await client.query("SELECT 1 FROM pg_policy WHERE polname = 'seen'")).rowCount, 1, 'the policy is still there');
  await client.query('DROP TABLE public.other');
  // A column of another table whose type is an array of the group table's rows.
  await client.query('CREATE TABLE public.snapshots (usages public.namespace_usage[])');
  const third = await runRebuild(db.url, ['namespace_usage']);
  t.is(third.code, 2, shown(third));
  t.regex(third.stderr, /column usages of table snapshots depends on/);
  t.is((await client.query("SELECT 1 FROM information_schema.columns WHERE table_name = 'snapshots' AND column_name = 'usages'")).rowCount, 1);
  await client.query('DROP TABLE public.snapshots');
  // A constraint trigger of another table declared FROM a group table (an automatic dependency).
  await client.query(`CREATE FUNCTION public.check_usage() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
    CREATE TABLE public.orders (id int);
    CREATE CONSTRAINT TRIGGER usage_checked AFTER INSERT ON public.orders FROM public.namespace_usage FOR EACH ROW EXECUTE FUNCTION public.check_usage()`);
  const fourth = await runRebuild(db.url, ['namespace_usage']);
  t.is(fourth.code, 2, shown(fourth));
  t.regex(fourth.stderr, /trigger usage_checked on table orders depends on namespace_usage/);
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// Regression: the new tables were made of columns, keys, indexes and grants only: a trigger, a
// policy, column privileges, an identity column, a publication... were dropped with the old table.
// What a rebuild can set again, it does (comments, statistics targets, storage parameters, replica
// identity); what it cannot, it refuses, naming it. A generated column made every rebuild fail.
test('a rebuild keeps comments, storage parameters, statistics targets, replica identity and generated columns, and refuses what it cannot carry over', async (t) => {
  // A role that the rebuilding role's default privileges grant to: the rebuilt tables must not
  // (dropped after the database, which holds the default privileges).
  const reader = `cse_test_reader_${randomBytes(4).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${reader}`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP ROLE IF EXISTS ${reader}`)));
  const { db, client } = await builtCopy(t);
  await client.query(`
    COMMENT ON TABLE public.namespace_usage IS 'per namespace';
    COMMENT ON COLUMN public.namespace_usage.builds IS 'every build';
    ALTER TABLE public.namespace_usage SET (fillfactor = 70);
    ALTER TABLE public.namespace_usage ALTER COLUMN builds SET STATISTICS 500;
    ALTER TABLE public.namespace_usage REPLICA IDENTITY FULL;
    ALTER TABLE public.namespace_usage ADD COLUMN avg_size bigint GENERATED ALWAYS AS (total_size / greatest(builds, 1)) STORED;
    -- Found by a review, lost or changed by a rebuild until this session: a CHECK NOT VALID that
    -- old rows break (validated in CREATE TABLE, it failed the rebuild), a column's planner option,
    -- the TOAST table's storage parameters, and grants of the rebuilding role's default privileges.
    ALTER TABLE public.namespace_usage ADD CONSTRAINT recent_namespaces CHECK (namespace_id > 1000) NOT VALID;
    ALTER TABLE public.namespace_usage ALTER COLUMN builds SET (n_distinct = 50);
    ALTER TABLE public.namespace_usage ADD COLUMN note text;
    ALTER TABLE public.namespace_usage SET (toast.autovacuum_enabled = false);
    ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER GRANT ALL ON TABLES TO ${reader};
    ALTER DEFAULT PRIVILEGES FOR ROLE CURRENT_USER GRANT ALL ON SEQUENCES TO ${reader}`);
  const rebuilt = await runRebuild(db.url, ['namespace_usage']);
  t.is(rebuilt.code, 0, shown(rebuilt));
  const { rows: [kept] } = await client.query(`
    SELECT (SELECT convalidated FROM pg_constraint WHERE conrelid = c.oid AND conname = 'recent_namespaces') AS validated,
           (SELECT attoptions FROM pg_attribute WHERE attrelid = c.oid AND attname = 'builds') AS options,
           (SELECT reloptions FROM pg_class WHERE oid = c.reltoastrelid) AS toast,
           (SELECT count(*)::int FROM pg_class r, aclexplode(r.relacl) a WHERE r.relnamespace = 'public'::regnamespace
               AND r.relname LIKE 'namespace_usage%' AND a.grantee = '${reader}'::regrole) AS granted
      FROM pg_class c WHERE c.oid = 'public.namespace_usage'::regclass`);
  t.like(kept, { validated: false, toast: ['autovacuum_enabled=false'], granted: 0 });
  t.true((kept.options as string[]).includes('n_distinct=50'), JSON.stringify(kept.options));
  const { rows: [after] } = await client.query(`
    SELECT obj_description(c.oid, 'pg_class') AS comment, col_description(c.oid, 2) AS column_comment, c.reloptions, c.relreplident,
           (SELECT attstattarget FROM pg_attribute WHERE attrelid = c.oid AND attname = 'builds') AS statistics,
           (SELECT attgenerated FROM pg_attribute WHERE attrelid = c.oid AND attname = 'avg_size') AS generated,
           (SELECT count(*)::int FROM public.namespace_usage WHERE avg_size = total_size / greatest(builds, 1)) = (SELECT count(*)::int FROM public.namespace_usage) AS computed
      FROM pg_class c WHERE c.oid = 'public.namespace_usage'::regclass`);
  t.like(after, { comment: 'per namespace', reloptions: ['fillfactor=70'], relreplident: 'f', statistics: 500, generated: 's', computed: true });
  t.is((await client.query("SELECT col_description('public.namespace_usage'::regclass, attnum) AS c FROM pg_attribute WHERE attrelid = 'public.namespace_usage'::regclass AND attname = 'builds'")).rows[0].c, 'every build');

  for (const [setup, named] of [
    ['CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$; CREATE TRIGGER touched AFTER INSERT ON public.namespace_usage FOR EACH ROW EXECUTE FUNCTION public.touch()', /trigger touched/],
    ['ALTER TABLE public.namespace_usage ENABLE ROW LEVEL SECURITY; CREATE POLICY mine ON public.namespace_usage USING (namespace_id > 0)', /row-level security, policy mine/],
    ['GRANT SELECT (namespace_id) ON public.namespace_usage TO PUBLIC', /column privileges on namespace_id/],
    ['CREATE PUBLICATION usage_pub FOR TABLE public.namespace_usage', /publication usage_pub/],
    // Regression (a review of 2026-12-07): publications of every table, or of the schema, were
    // not seen; the load into the shadow schema went to every subscriber (which has no such
    // table), and the swapped-in rows to none.
    ['CREATE PUBLICATION all_pub FOR ALL TABLES', /publication (\w+, )*all_pub/],
    ['CREATE PUBLICATION schema_pub FOR TABLES IN SCHEMA public', /publication (\w+, )*schema_pub/],
    ['CREATE RULE no_delete AS ON DELETE TO public.namespace_usage DO INSTEAD NOTHING', /rule no_delete/],
    // A projection table that inherits from another: the parent would find no rows of it after the swap.
    ['CREATE TABLE public.usage_parent (namespace_id integer); ALTER TABLE public.namespace_usage INHERIT public.usage_parent', /inheritance \(a parent or child table\)/],
  ] as const) {
    const checkpoints = await liveCheckpoints(client);
    await client.query(`BEGIN; ${setup}`);
    await client.query('COMMIT');
    const refused = await runRebuild(db.url, ['namespace_usage']);
    t.is(refused.code, 2, shown(refused));
    t.regex(refused.stderr, /cannot rebuild projection group "namespace_usage": table namespace_usage has .*which a rebuild cannot carry over/, setup);
    t.regex(refused.stderr, named, setup);
    // The progress ends once, saying how (it ended a second time, as "stopped", at the exit).
    t.deepEqual(refused.stderr.match(/^rebuild namespace_usage: .* (done|failed|stopped)$/gm)?.map((line) => line.split(' ').pop()), ['failed'], refused.stderr);
    t.deepEqual(await liveCheckpoints(client), checkpoints);
    t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  }
});

/**
 * A tablespace of the test's own, made inside the server's data directory (allow_in_place_tablespaces:
 * no directory to prepare), dropped once the test's databases are: called before them.
 */
async function inPlaceTablespace(t: ExecutionContext): Promise<string> {
  const name = `cse_test_space_${randomBytes(4).toString('hex')}`;
  await withAdmin(async (admin) => {
    await admin.query('SET allow_in_place_tablespaces = on');
    await admin.query(`CREATE TABLESPACE ${name} LOCATION ''`);
  });
  t.teardown(() => withAdmin((admin) => admin.query(`DROP TABLESPACE IF EXISTS ${name}`)));
  return name;
}

/** The tablespace of each of `relations` (null: the database's default). */
async function tablespacesOf(client: Queryable, relations: string[]): Promise<Record<string, string | null>> {
  const { rows } = await client.query<{ relation: string; tablespace: string | null }>(
    `SELECT c.relname AS relation, s.spcname::text AS tablespace FROM pg_class c LEFT JOIN pg_tablespace s ON s.oid = c.reltablespace
      WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) ORDER BY 1`,
    [relations],
  );
  return Object.fromEntries(rows.map((row) => [row.relation, row.tablespace]));
}

// Regression (the rebuild review of 2026-12-07): a table in a tablespace of its own was refused,
// and an index in one came back in the database's default, without a word.
test('a rebuild keeps the tablespaces of a table, its keys\' indexes and its other indexes, and its keys\' storage parameters; a role that may not create in a tablespace is refused before the fill', async (t) => {
  // Dropped last, once neither the database nor the tablespace holds its grants (teardowns run last to first).
  const rebuilder = `cse_test_rebuilder_${randomBytes(4).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${rebuilder} LOGIN`));
  t.teardown(() => withAdmin((admin) => admin.query(`DROP ROLE IF EXISTS ${rebuilder}`)));
  const space = await inPlaceTablespace(t);
  const { reference, db, client } = await builtCopy(t);
  // The database's default names another tablespace: what has none of its own live must not go there.
  const name = new URL(db.url).pathname.slice(1);
  await client.query(`
    ALTER DATABASE "${name}" SET default_tablespace = ${space};
    ALTER TABLE public.namespace_usage SET TABLESPACE ${space};
    ALTER INDEX public.namespace_usage_pkey SET TABLESPACE ${space};
    ALTER INDEX public.namespace_usage_pkey SET (fillfactor = 70);
    CREATE INDEX namespace_usage_builds ON public.namespace_usage (builds) TABLESPACE ${space};
    CREATE INDEX namespace_usage_size ON public.namespace_usage (total_size) TABLESPACE pg_default;
    -- A unique constraint that is no upsert's arbiter: dropped for the load, added back after it.
    ALTER TABLE public.namespace_usage_build ADD CONSTRAINT namespace_usage_build_once UNIQUE (build_id, namespace_id) WITH (fillfactor = 60) USING INDEX TABLESPACE ${space}`);
  const keyOptions = async () =>
    (await client.query(`SELECT relname AS index, reloptions AS options FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname IN ('namespace_usage_pkey', 'namespace_usage_build_once') ORDER BY 1`)).rows;
  const options = [{ index: 'namespace_usage_build_once', options: ['fillfactor=60'] }, { index: 'namespace_usage_pkey', options: ['fillfactor=70'] }];
  t.deepEqual(await keyOptions(), options);
  const relations = ['namespace_usage', 'namespace_usage_pkey', 'namespace_usage_builds', 'namespace_usage_size', 'namespace_usage_build', 'namespace_usage_build_pkey', 'namespace_usage_build_once'];
  const placed = { ...Object.fromEntries(relations.map((relation) => [relation, null])), namespace_usage: space, namespace_usage_pkey: space, namespace_usage_builds: space, namespace_usage_build_once: space };
  t.deepEqual(await tablespacesOf(client, relations), placed);

  const log = openLog(t, db.url);
  const reports = await rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50 });
  t.true(reports.events > 0);
  t.deepEqual(await tablespacesOf(client, relations), placed);
  t.deepEqual(await keyOptions(), options);
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);

  // A role that owns the tables and may do all else, but not create in the tablespace.
  await client.query(`
    ${namespaceUsage.tables.map((table) => `ALTER TABLE public.${table} OWNER TO ${rebuilder};`).join('\n')}
    GRANT CONNECT, CREATE ON DATABASE "${name}" TO ${rebuilder};
    GRANT CREATE ON SCHEMA public TO ${rebuilder};
    GRANT USAGE ON SCHEMA event_store TO ${rebuilder};
    GRANT ALL ON ALL TABLES IN SCHEMA event_store TO ${rebuilder};
    GRANT ALL ON ALL SEQUENCES IN SCHEMA event_store TO ${rebuilder}`);
  const url = new URL(db.url);
  url.username = rebuilder;
  const refusal = `cannot rebuild projection group "namespace_usage": role ${rebuilder} may not create tables or indexes in tablespace ${space}, where the live ones are; ` +
    `GRANT CREATE ON TABLESPACE ${space} TO ${rebuilder}; the live tables, checkpoints and fingerprints are unchanged`;
  t.deepEqual(await rebuildRefusals(url.toString(), [[namespaceUsage]]), [{ group: 'namespace_usage', reason: refusal }]);
  let filled = false;
  await t.throwsAsync(rebuildGroup({ databaseUrl: url.toString(), log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase: () => void (filled = true) }), { instanceOf: RebuildRefusedError, message: refusal });
  t.false(filled, 'refused before the fill');
  await withAdmin((admin) => admin.query(`GRANT CREATE ON TABLESPACE ${space} TO ${rebuilder}`));
  await rebuildGroup({ databaseUrl: url.toString(), log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50 });
  t.deepEqual(await tablespacesOf(client, relations), placed);
  t.deepEqual(await digests(client), reference.digests);
});

// Regression (the rebuild review of 2026-12-07): a group's foreign key to another group's table
// was added in the transaction that builds the group's indexes, and the lock it takes on that
// table (SHARE ROW EXCLUSIVE) stopped the table's writers, the other group's projector among them,
// until the last index was built: minutes on a large log.
test('a foreign key to another group\'s table does not hold that table\'s writers during the index build; it is validated, and kept', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const name = new URL(db.url).pathname.slice(1);
  const { rows: [usage] } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM public.namespace_usage');
  // An index that builds slowly, in the rebuild's sessions only (a setting of the database, taken
  // by the sessions that start after it is set): about four seconds in all.
  await client.query(`
    CREATE FUNCTION public.slowly(integer) RETURNS integer IMMUTABLE LANGUAGE sql
      AS $$ SELECT $1 FROM pg_sleep(coalesce(current_setting('cse_test.index_sleep', true), '0')::float8) $$;
    CREATE INDEX namespace_usage_slowly ON public.namespace_usage (public.slowly(namespace_id));
    ALTER TABLE public.namespace_usage ADD CONSTRAINT namespace_usage_namespace_fkey FOREIGN KEY (namespace_id) REFERENCES public.namespace (id);
    ALTER DATABASE "${name}" SET cse_test.index_sleep = '${(4 / Math.max(usage!.n, 1)).toFixed(4)}'`);
  t.true(usage!.n > 0);

  const log = openLog(t, db.url);
  const rebuilt = rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50 });
  // Once the shadow table's index is being built, a writer of the other group's table goes through.
  const building = async () =>
    (await client.query(`SELECT 1 FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'rebuild_namespace_usage'`)).rowCount === 1;
  let ended = false;
  void rebuilt.finally(() => (ended = true)).catch(() => undefined);
  await waitUntil(async () => ended || (await building()), 'the index build to start', { timeoutMs: 60_000 });
  const indexing = !ended;
  t.true(indexing, 'the index build was seen');
  const writer = await connect(t, db.url);
  await writer.query(`SET lock_timeout = '2s'`);
  await t.notThrowsAsync(writer.query('UPDATE public.namespace SET name = name WHERE id = (SELECT min(id) FROM public.namespace)'));
  t.true(await building(), 'the write went through while the index was being built');

  await rebuilt;
  const { rows: [key] } = await client.query(
    `SELECT convalidated AS validated, confrelid::regclass::text AS parent FROM pg_constraint WHERE conrelid = 'public.namespace_usage'::regclass AND conname = 'namespace_usage_namespace_fkey'`,
  );
  t.deepEqual(key, { validated: true, parent: 'namespace' });
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

/**
 * A rebuild of namespace_usage, whose table references `namespace` (another group's) by a foreign
 * key (`onDelete`), while a transaction that ran `hold` on `namespace` stays open: the rebuild must
 * wait for it in turns that give way, so that another session's `UPDATE` and `SELECT` of
 * `namespace` go through meanwhile; once the transaction ends, the rebuild completes, the key
 * validated. `whileWaiting` checks where the rebuild waits.
 */
async function outwardKeyGivesWay(t: ExecutionContext, { onDelete, hold, whileWaiting }: { onDelete: string; hold: string; whileWaiting?: (client: pg.Client) => Promise<void> }) {
  const { reference, db, client } = await builtCopy(t);
  await client.query(`ALTER TABLE public.namespace_usage ADD CONSTRAINT namespace_usage_namespace_fkey FOREIGN KEY (namespace_id) REFERENCES public.namespace (id) ${onDelete}`);
  const holder = await connect(t, db.url);
  await holder.query('BEGIN');
  await holder.query(hold);
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  const log = openLog(t, db.url);
  const rebuilt = rebuildGroup({ databaseUrl: db.url, log, logger, projections: [namespaceUsage], batchSize: 50 });
  let ended = false;
  void rebuilt.finally(() => (ended = true)).catch(() => undefined);
  const retrying = 'a transaction holds a table that the group references; trying its foreign key again';
  await waitUntil(() => ended || warnings.includes(retrying), 'a lock attempt to give way', { timeoutMs: 60_000 });
  t.false(ended, 'the rebuild waits for the transaction');
  await whileWaiting?.(client);
  // Another session's statements, queued behind the rebuild's lock attempt, go through when the
  // attempt gives up: they do not wait for the long transaction's end.
  const other = await connect(t, db.url);
  await other.query(`SET statement_timeout = '20s'`);
  await t.notThrowsAsync(other.query('UPDATE public.namespace SET name = name WHERE id = (SELECT max(id) FROM public.namespace)'));
  await t.notThrowsAsync(other.query('SELECT count(*) FROM public.namespace'));
  t.false(ended);
  await holder.query('COMMIT');
  await rebuilt;
  const { rows: [key] } = await client.query(`SELECT convalidated AS validated FROM pg_constraint WHERE conrelid = 'public.namespace_usage'::regclass AND conname = 'namespace_usage_namespace_fkey'`);
  t.deepEqual(key, { validated: true });
  t.deepEqual(await digests(client), reference.digests);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
}

test('a foreign key to another group\'s table held by a long transaction: its lock attempts give way to that table\'s writers, and it is added once the transaction ends', (t) =>
  outwardKeyGivesWay(t, { onDelete: '', hold: 'UPDATE public.namespace SET name = name WHERE id = (SELECT min(id) FROM public.namespace)' }));

// Regression (a review of the eighth session of 2026-12-07): the old tables were dropped after the
// swap with one DROP SCHEMA ... CASCADE, which takes an ACCESS EXCLUSIVE lock on every table their
// foreign keys reference (their triggers go) and waited without end behind any reader of one: that
// table's readers and writers, another group's projector among them, queued behind it meanwhile.
// (The key cascades: added apart before the load, it is dropped the same way.)
test('after the swap, the old tables\' foreign keys to another group\'s table are dropped in turns that give way to that table\'s readers and writers', (t) =>
  outwardKeyGivesWay(t, {
    onDelete: 'ON DELETE CASCADE',
    hold: 'SELECT 1 FROM public.namespace LIMIT 1',
    whileWaiting: async (client) => {
      const { rowCount } = await client.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'rebuild_old_namespace_usage'`);
      t.is(rowCount, 1, 'swapped in: the old tables wait to be dropped');
    },
  }));

// The other half of that regression: a drop that cannot get its lock in time leaves the old
// tables for a later run, emptied in the swap, so that their foreign keys can refuse no delete in
// the other table meanwhile; the next rebuild-projections drops them.
test('old tables whose foreign keys to another group\'s table cannot be dropped in time are left emptied, and dropped by the next run', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  await client.query('ALTER TABLE public.namespace_usage ADD CONSTRAINT namespace_usage_namespace_fkey FOREIGN KEY (namespace_id) REFERENCES public.namespace (id)');
  const reader = await connect(t, db.url);
  await reader.query('BEGIN');
  await reader.query('SELECT 1 FROM public.namespace LIMIT 1');
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push((JSON.parse(line) as { msg: string }).msg) });
  await rebuildGroup({ databaseUrl: db.url, log: openLog(t, db.url), logger, projections: [namespaceUsage], batchSize: 50 });
  t.true(warnings.includes('could not drop the old tables; the next rebuild will'), JSON.stringify(warnings));
  const { rows: [old] } = await client.query<{ rows: number }>('SELECT count(*)::int AS rows FROM rebuild_old_namespace_usage.namespace_usage');
  t.deepEqual(old, { rows: 0 }, 'emptied in the swap');
  t.deepEqual(await digests(client), reference.digests);
  await reader.query('COMMIT');
  const next = await runRebuild(db.url, ['--dry-run']);
  t.regex(next.stdout, /would drop/, shown(next));
  const dropped = await runRebuild(db.url, []);
  t.is(dropped.code, 0, shown(dropped));
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

test('a migration of a live table during the rebuild refuses the swap, which would undo it; everything stays as it is', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  const onPhase = async (phase: string) => {
    if (phase === 'finished') await client.query('ALTER TABLE public.namespace_usage ADD COLUMN note text');
  };
  const failure = await t.throwsAsync(rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase }));
  t.regex(failure!.message, /the live table namespace_usage of projection group "namespace_usage" changed during the rebuild \(a migration, a grant\?\): the swap would undo it; run the rebuild again/);
  t.is((await client.query(`SELECT 1 FROM information_schema.columns WHERE table_name = 'namespace_usage' AND column_name = 'note'`)).rowCount, 1, 'the column is still there');
  t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// The swap reads the live tables' definitions in full before it locks them, and under the locks
// compares one stamp of the catalog (a review measured the full reading under the locks at 250 to
// 480 ms of every reader's time): a change made between the two is refused as well.
// And under a database whose default isolation is REPEATABLE READ (found in review): the swap's
// connection took it, read the catalog under its locks as it was before them, and undid the change.
for (const isolation of ['read committed', 'repeatable read']) {
  test(`a change to a live table while the swap waits for its locks refuses the swap, which would undo it (default isolation ${isolation})`, async (t) => {
    const { reference, db, client } = await builtCopy(t);
    await client.query(`ALTER DATABASE "${new URL(db.url).pathname.slice(1)}" SET default_transaction_isolation = '${isolation}'`);
    const log = openLog(t, db.url);
    const blocker = await connect(t, db.url);
    const rebuilding = rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase: holdShadowTableAtTheSwap(blocker) });
    void rebuilding.catch(() => undefined); // awaited below
    await until('the swap to wait for the shadow table', async () => {
      const { rows } = await client.query(`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE %rebuild_namespace_usage%'`);
      return rows.length > 0;
    });
    await client.query(`COMMENT ON TABLE public.namespace_usage IS 'changed while the swap waited'`);
    await blocker.query('COMMIT');
    const failure = await t.throwsAsync(rebuilding);
    t.regex(failure!.message, /the live table namespace_usage of projection group "namespace_usage" changed during the rebuild \(a migration, a grant\?\): the swap would undo it/);
    t.is((await client.query(`SELECT obj_description('public.namespace_usage'::regclass, 'pg_class') AS c`)).rows[0].c, 'changed while the swap waited');
    t.deepEqual(await liveCheckpoints(client), reference.checkpoints);
    t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  });
}

// Regression (found in review): moving a live table to the old schema also locks its sequences,
// which LOCK TABLE cannot take, and the swap set its lock timeout to 0 before the moves: a session
// that had read a sequence in an open transaction held the swap, holding every live table of the
// group and every reader queued behind it, for as long as it stayed open.
test('a session holding a live table\'s sequence at the swap makes the attempt give up and try again, rather than hold the group\'s readers', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  const holder = await connect(t, db.url);
  const records: { msg: string }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as { msg: string }) });
  const onPhase = async (phase: string) => {
    if (phase !== 'finished') return;
    await holder.query('BEGIN');
    await holder.query('SELECT last_value FROM public.build_id_seq');
  };
  const rebuilding = rebuildGroup({ databaseUrl: db.url, log, logger, projections: condaStoreProjections, batchSize: 500, onPhase });
  void rebuilding.catch(() => undefined); // awaited below
  await until('a swap attempt to give up on the sequence', () => records.some((r) => r.msg === 'readers hold the live tables; trying the swap again'));
  await holder.query('COMMIT');
  await rebuilding;
  t.deepEqual(await digests(client), reference.digests, 'the same rows, rebuilt');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

/** An onPhase that has `blocker` take a shadow table (as autovacuum may) just before the rebuild swaps: the swap's LOCK TABLE waits, until `blocker` commits. */
function holdShadowTableAtTheSwap(blocker: pg.Client): (phase: string) => Promise<void> {
  return async (phase) => {
    if (phase !== 'finished') return;
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE rebuild_namespace_usage.namespace_usage IN SHARE UPDATE EXCLUSIVE MODE');
  };
}

// Regression (found by a review): the rebuild's own connection took the user's timeouts, so a
// unique key added back over a large table outlasted a role's statement_timeout, and the swap's
// transaction, idle while the new tables catch up, an idle_in_transaction_session_timeout.
test('regression: the database\'s statement and idle-in-transaction timeouts do not end a rebuild', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const name = new URL(db.url).pathname.slice(1);
  // Far from scheduling noise: the rebuild's other connections take the database's settings too.
  await client.query(`ALTER DATABASE "${name}" SET idle_in_transaction_session_timeout = '1s'`);
  const log = openLog(t, db.url);
  // The swap's transaction is open while the phase runs: a catch-up that takes a while.
  const onPhase = async (phase: string) => {
    if (phase === 'swapping') await new Promise((resolve) => setTimeout(resolve, 3000));
  };
  await rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase });
  t.deepEqual(await digests(client), reference.digests, 'the same rows, rebuilt');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// Regression (a review of 2026-12-07): the new tables came in without the planner's statistics,
// which only an autovacuum's analyze gave them later (and none with autovacuum off, as here).
test('the swapped-in tables have the planner\'s statistics', async (t) => {
  const { db, client } = await builtCopy(t);
  const tables = condaStoreProjections.flatMap((p) => p.tables);
  for (const table of tables) await client.query(`ALTER TABLE public.${table} SET (autovacuum_enabled = false)`);
  const log = openLog(t, db.url);
  await rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: condaStoreProjections, batchSize: 500 });
  const { rows } = await client.query<{ table: string; rows: string; analyzed: boolean }>(
    `SELECT c.relname AS table, c.reltuples::bigint::text AS rows, EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = 'public' AND s.tablename = c.relname) AS analyzed
       FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relname = ANY($1) ORDER BY 1`,
    [tables],
  );
  t.is(rows.length, tables.length);
  for (const { table } of rows) {
    const { rows: [count] } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM public.${table}`);
    const row = rows.find((r) => r.table === table)!;
    if (count!.n === '0') continue;
    t.true(row.analyzed, `${table}: statistics`);
    t.is(row.rows, count!.n, `${table}: its row count`);
  }
  t.true(rows.some((row) => row.analyzed), 'tables with rows');
});

// The half of the regression above that a slow statement shows: the swap's LOCK TABLE, waiting for
// a shadow table another session holds, waits past the database's statement_timeout (a lock wait
// counts towards it), as a unique key added back over a large table runs past it.
test('regression: a rebuild statement that runs past the database\'s statement_timeout is not cancelled', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const name = new URL(db.url).pathname.slice(1);
  // Far from scheduling noise: the rebuild's log reads take the database's statement_timeout too.
  const timeoutMs = 1000;
  await client.query(`ALTER DATABASE "${name}" SET statement_timeout = '${timeoutMs}ms'`);
  // The swap's first wait for the shadow tables lasts deadlock_timeout and a second: longer than
  // the wait this test looks for (twice the statement timeout), with room for a late look.
  await client.query(`ALTER DATABASE "${name}" SET deadlock_timeout = '5s'`);
  const log = openLog(t, db.url);
  const blocker = await connect(t, db.url);
  await blocker.query('SET statement_timeout = 0');
  const onPhase = holdShadowTableAtTheSwap(blocker);
  const rebuilding = rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase });
  void rebuilding.catch(() => undefined); // awaited below
  // Held until the swap's statement has waited twice the timeout (or the rebuild has ended: failed).
  let ended = false;
  void rebuilding.finally(() => (ended = true)).catch(() => undefined);
  await until('the swap to wait past the statement timeout', async () => {
    if (ended) return 'ended';
    const { rows } = await client.query<{ waited: boolean }>(
      `SELECT now() - query_start > $1 * interval '2 ms' AS waited FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE %rebuild_namespace_usage%'`,
      [timeoutMs],
    );
    return rows[0]?.waited;
  });
  await blocker.query('COMMIT');
  await rebuilding;
  t.deepEqual(await digests(client), reference.digests, 'the same rows, rebuilt');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// Regression (found by a review): the swap locked the shadow and live tables in one statement, with
// a lock timeout below deadlock_timeout, and PostgreSQL cancels an autovacuum that holds a lock
// only for a session that has waited deadlock_timeout: an autovacuum of a freshly loaded shadow
// table, or of a large live one (minutes), failed every attempt ("could not lock the tables ...
// after 30 attempts"), and the rebuild with it. On a server of its own: this machine's runs no
// autovacuum.
for (const [which, schema] of [['a shadow table', 'rebuild_namespace_usage'], ['a live table', 'public']] as const) {
  test(`regression: the swap gets past an autovacuum of ${which}, which PostgreSQL cancels for it`, async (t) => {
    await slot(t);
    const server = await privateServer(t, { autovacuum: 'on', autovacuum_naptime: '1', log_autovacuum_min_duration: '0' });
    const url = server.replace(/\/postgres$/, '/autovacuum');
    await withDatabase(server, (client) => client.query('CREATE DATABASE autovacuum'));
    await migrateLatest(url);
    const log = openLog(t, url);
    await appendInBatches(log, base);
    await catchUp(url, log, { projections: allProjections, batchSize: 500 });
    const before = await withDatabase(url, digests);
    const client = await connect(t, url);
    // Vacuumed at the slowest pace, and at once (set before the rebuild, which copies it to the
    // shadow table: set on the live one during it, it would refuse the swap as a change).
    await client.query(
      'ALTER TABLE public.namespace_usage_build SET (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0)',
    );
    const table = `${schema}.namespace_usage_build`;
    const onPhase = async (phase: string) => {
      if (phase !== 'finished') return;
      // Dead rows enough for an autovacuum that outlasts every attempt the swap used to make (about 45 s).
      await client.query(`INSERT INTO ${table} SELECT g, 1, false, 0 FROM generate_series(1000000, 1200000) g`);
      await client.query(`DELETE FROM ${table} WHERE build_id >= 1000000`);
      await until(`an autovacuum of ${which}`, async () => {
        const { rows } = await client.query(
          `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE a.backend_type = 'autovacuum worker' AND l.granted AND l.relation = '${table}'::regclass`,
        );
        return rows.length > 0;
      }, 180_000);
    };
    await rebuildGroup({ databaseUrl: url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase });
    t.deepEqual(await digests(client), before, 'the same rows, rebuilt');
    t.deepEqual(await leftovers(client), NO_LEFTOVERS);
  });
}

test('the swap waits for a shadow table without holding the live ones: readers go on meanwhile', async (t) => {
  const { reference, db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  // A session holds a shadow table when the rebuild is about to swap (as autovacuum may).
  const blocker = await connect(t, db.url);
  const onPhase = holdShadowTableAtTheSwap(blocker);
  const rebuilding = rebuildGroup({ databaseUrl: db.url, log, logger: silentLogger, projections: [namespaceUsage], batchSize: 50, onPhase });
  void rebuilding.catch(() => undefined); // awaited below
  const pid = await until('the swap to wait for the shadow table', async () => {
    const { rows } = await client.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE %rebuild_namespace_usage%'`,
    );
    return rows[0]?.pid;
  });
  const { rows: held } = await client.query<{ table: string }>(
    `SELECT c.relname AS table FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE l.pid = $1 AND l.granted AND n.nspname = 'public' AND c.relname = ANY($2)`,
    [pid, USAGE_TABLES],
  );
  t.deepEqual(held, [], 'no live table held while waiting');
  await blocker.query('COMMIT');
  await rebuilding;
  t.deepEqual(await digests(client), reference.digests, 'the same rows, rebuilt');
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

test('a rebuild of two groups that fails at the second swap says which group was swapped in already', async (t) => {
  const { db, client } = await builtCopy(t);
  const log = openLog(t, db.url);
  let swaps = 0;
  // While the first group (conda-store) swaps, someone creates a view over the second's table.
  const onPhase = async (phase: string) => {
    if (phase === 'swapping' && swaps++ === 0) await client.query('CREATE VIEW public.usage_report AS SELECT namespace_id FROM public.namespace_usage');
  };
  const failure = await t.throwsAsync(rebuildGroups({ databaseUrl: db.url, log, logger: silentLogger, groups: [condaStoreProjections, [namespaceUsage]], batchSize: 200, onPhase }));
  t.regex(failure!.message, /view public\.usage_report reads namespace_usage.* \(group "conda-store" had been rebuilt and swapped in before this failure; the rest were not\)$/);
  t.deepEqual(await leftovers(client), NO_LEFTOVERS);
});

// Regression: `--all` with projection names rebuilt everything, the names ignored without a word.
test('rebuild-projections refuses --all together with projection names, before touching anything', async (t) => {
  const unused = 'postgres://postgres@127.0.0.1:1/unused';
  const both = await runRebuild(unused, ['--all', 'namespace_usage']);
  t.is(both.code, 2, both.stderr);
  t.regex(both.stderr, /^error: --all rebuilds every projection: name projections \(namespace_usage\) or give --all, not both/m);
});
