/**
 * The tables `knex migrate:latest` creates in `public` are conda-store's migrated tables
 * (shared/spec/conda-store-tables.md, as data in test/schema/conda-store-spec.ts), and
 * `knex migrate:rollback --all` removes them again.
 */
import { randomBytes } from 'node:crypto';
import test from 'ava';
import { allProjections } from '../projections/index.js';
import { migrateLatest, missingMigrations, rollbackAll } from '../src/db/migrate.js';
import { freshDatabase, urlFor, withAdmin, withClient } from './helpers/database.js';
import knexFactory from 'knex';
import { knexConfig } from '../src/db/knex-config.js';
import { runCli } from './helpers/cli.js';
import { runNpx, runRebuild, shown } from './helpers/rebuild.js';
import {
  describeSchema,
  describeTable,
  listAllTypeNames,
  listRelations,
  listSequences,
  listTables,
  listTypes,
} from './helpers/introspect.js';
import { condaStoreSequences, condaStoreTableNames, condaStoreTables } from './schema/conda-store-spec.js';

const CONDA_STORE_MIGRATION = '20260101000200_conda_store_tables.ts';

/** Tables of this project's own read models (namespace_usage...): in public too, beside conda-store's. */
const readModelTables = allProjections.filter((p) => p.group !== 'conda-store').flatMap((p) => p.tables);
const ofReadModel = (name: string) => readModelTables.some((table) => name === table || name === `${table}_pkey`);

test('public holds exactly the 16 conda-store tables (plus the read models), their sequences and indexes, and no types', async (t) => {
  const db = await freshDatabase(t);
  await withClient(db.url, async (client) => {
    t.deepEqual(await listTables(client, 'public'), [...condaStoreTableNames, ...readModelTables].sort(), 'tables');
    t.deepEqual(await listSequences(client, 'public'), condaStoreSequences, 'sequences');

    const expectedIndexes = Object.values(condaStoreTables)
      .flatMap((definition) => definition.indexes.map((index) => index.name))
      .sort();
    const relations = (await listRelations(client, 'public')).filter((relation) => !ofReadModel(relation.name));
    t.deepEqual(
      relations.filter((relation) => relation.kind === 'index').map((relation) => relation.name),
      expectedIndexes,
      'indexes',
    );
    t.deepEqual(
      relations.filter((relation) => !['table', 'sequence', 'index'].includes(relation.kind)),
      [],
      'no views, materialized views, foreign or partitioned tables',
    );
    // Neither enum types (the migrated database stores enum names as varchar) nor any other.
    t.deepEqual(await listTypes(client, 'public'), [], 'types');
  });
});

// One test per table, so that every table that differs is reported, with its difference.
for (const table of condaStoreTableNames) {
  test(`public.${table} is as the spec's migrated database has it`, async (t) => {
    const db = await freshDatabase(t);
    const actual = await withClient(db.url, (client) => describeTable(client, 'public', table));
    t.deepEqual(actual, condaStoreTables[table], table);
  });
}

test('rollback --all leaves public empty, and migrate:latest works again afterwards', async (t) => {
  const db = await freshDatabase(t, { migrated: false });

  const applied = await migrateLatest(db.url);
  t.true(applied.includes(CONDA_STORE_MIGRATION), `applied: ${applied.join(', ')}`);

  const reverted = await rollbackAll(db.url);
  t.deepEqual([...reverted].sort(), [...applied].sort(), 'every applied migration is reverted');
  await withClient(db.url, async (client) => {
    t.deepEqual(await listRelations(client, 'public'), [], 'no tables, sequences, indexes or views in public');
    t.deepEqual(await listAllTypeNames(client, 'public'), [], 'no types in public');
  });

  const reapplied = await migrateLatest(db.url);
  t.deepEqual(reapplied, applied, 'the same migrations apply again');
  const actual = await withClient(db.url, (client) => describeSchema(client, 'public'));
  for (const table of readModelTables) delete actual[table];
  t.deepEqual(actual, condaStoreTables, 'public after rollback and migrate:latest');
});

// Regression: `knex migrate:latest` (and `serve --migrate`) connected to the server's `postgres`
// database first, to create the target if missing, and failed for a role allowed into its own
// database only.
test.serial('npx knex migrate:latest works for a role allowed into its own database only, not into postgres', async (t) => {
  const role = `cse_owner_${randomBytes(4).toString('hex')}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${role} LOGIN`));
  // Teardowns run last first: this one after the database (which the role will own) is dropped.
  t.teardown(() => withAdmin(async (admin) => {
    await admin.query('GRANT CONNECT ON DATABASE postgres TO PUBLIC');
    await admin.query(`DROP ROLE ${role}`);
  }));
  const db = await freshDatabase(t, { migrated: false });
  await withAdmin(async (admin) => {
    await admin.query(`ALTER DATABASE "${db.name}" OWNER TO ${role}`);
    // Superusers (every other test's connections) are not held by CONNECT privileges.
    await admin.query('REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
  });
  const url = new URL(db.url);
  url.username = role;
  const outside = new URL(url);
  outside.pathname = '/postgres';
  await t.throwsAsync(withClient(outside.toString(), async () => undefined), { message: /permission denied for database "postgres"/ }, 'the role may not connect to postgres');

  const migrate = await runNpx(url.toString(), ['knex', 'migrate:latest']);
  t.is(migrate.code, 0, shown(migrate));
  await withClient(url.toString(), async (client) => t.deepEqual((await listTables(client, 'public')).length > 0, true));
});

// Regression: on a database whose migrations stopped before ingestion's tables, status failed
// (exit 2, a missing relation) instead of saying what is missing; and one without only the newest
// migration (a new release installed, not migrated yet) must not fail on its new column.
test('status on a database whose migrations stopped before ingestion: it exits 0, lists the pending migrations and shows ingestion as not set up', async (t) => {
  const db = await freshDatabase(t);
  const env = { DATABASE_URL: db.url, NATS_URL: 'nats://127.0.0.1:1' };
  const knex = knexFactory(knexConfig(db.url));
  try {
    const undo = async () => ((await knex.migrate.down()) as [number, string[]])[1][0]!.split('/').pop()!;
    for (let name = ''; name !== '20260101001300_ingestion_stats_stream_created.ts'; ) name = await undo();
    const newestMissing = await runCli(['status'], { env });
    t.is(newestMissing.code, 0, shown(newestMissing));
    t.regex(newestMissing.stdout, /^migrations pending: 20260101001300_ingestion_stats_stream_created\.ts[^\n]*\n[^]*messages accepted: 0, duplicates: 0, rejected: 0\n/);
    // Undone newest first, down to the ingestion migration itself.
    for (let name = ''; name !== '20260101000400_ingestion.ts'; ) name = await undo();
  } finally {
    await knex.destroy();
  }
  const pending = await missingMigrations(db.url);
  t.is(pending[0], '20260101000400_ingestion.ts');
  const status = await runCli(['status'], { env });
  t.is(status.code, 0, shown(status));
  t.true(status.stdout.startsWith(`migrations pending: ${pending.join(', ')} (run npx knex migrate:latest)\nlog head: 0\n`), status.stdout);
  t.regex(status.stdout, /\ningestion: not set up \(migrations pending\)\n$/);
  const json = await runCli(['status', '--json'], { env });
  t.is(json.code, 0, shown(json));
  t.like(JSON.parse(json.stdout), { head: 0, pendingMigrations: pending, ingestion: null });
});

// Regression (found by a review): status listed the checkpoints only, so a projection that had
// never run (a new database, a restore before the first serve, a projection new in a release) was
// left out with its lag, and an older release's checkpoint was listed as lagging for ever.
test('status lists every projection of the release, one that never ran as not started with the whole log as its lag, and other checkpoints apart', async (t) => {
  const db = await freshDatabase(t);
  const env = { DATABASE_URL: db.url, NATS_URL: 'nats://127.0.0.1:1' };
  await withClient(db.url, async (client) => {
    await client.query(`INSERT INTO event_store.events (global_position, id, stream, stream_version, type, data, transaction_id)
      VALUES (nextval('event_store.global_position_seq'), gen_random_uuid(), 'namespace-1', 0, 'NamespaceCreated', '{"namespace_id": 1, "name": "default"}', pg_current_xact_id())`);
    await client.query(`INSERT INTO event_store.projections (name, position) VALUES ('an_old_projection', 1)`);
  });
  const json = await runCli(['status', '--json'], { env });
  t.is(json.code, 0, shown(json));
  const parsed = JSON.parse(json.stdout) as { head: number; projections: { name: string; position: number; lag: number; state: string }[]; otherCheckpoints: string[] };
  t.is(parsed.head, 1);
  const names = [...new Set(allProjections.map((projection) => projection.name))].sort();
  t.deepEqual(parsed.projections.map(({ name, position, lag, state }) => ({ name, position, lag, state })), names.map((name) => ({ name, position: 0, lag: 1, state: 'not started' })));
  t.deepEqual(parsed.otherCheckpoints, ['an_old_projection']);
  const text = await runCli(['status'], { env });
  t.is(text.code, 0, shown(text));
  t.regex(text.stdout, /^namespaces\s+0\s+1\s+not started\s*$/m);
  t.regex(text.stdout, /checkpoints of projections this release does not have \(another release's\): an_old_projection\n/);
});

// Regression: `serve --migrate` started several times at once on a new database raced in Knex's
// setup (two rows in its lock table: every later migration "already locked"), and in CREATE
// DATABASE (a unique violation of the catalog).
test('several migrations at once of a database that does not exist yet: one creates and migrates it, the others find it done', async (t) => {
  const name = `cse_test_race_${randomBytes(4).toString('hex')}`;
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  const url = urlFor(name);
  const applied = await Promise.all([1, 2, 3].map(() => migrateLatest(url)));
  t.is(applied.filter((list) => list.length > 0).length, 1, 'one of them applied the migrations');
  t.deepEqual(await missingMigrations(url), []);
  await withClient(url, async (client) => t.is((await client.query('SELECT count(*)::int AS n FROM knex.knex_migrations_lock')).rows[0].n, 1));
  t.deepEqual(await migrateLatest(url), [], 'a later migration is not "already locked"');
});

// Regression (found by a review): knexfile.ts created the database for every knex command (a
// misspelt DATABASE_URL given to migrate:status got an empty database of that name; migrate:make
// needed a server) and read every variable of the commands (LOG_LEVEL=verbose stopped migrations).
test('npx knex migrate:latest creates a missing database, whatever LOG_LEVEL says; migrate:status does not create one', async (t) => {
  const name = `cse_test_knexfile_${randomBytes(4).toString('hex')}`;
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)));
  const url = urlFor(name);
  const exists = () => withAdmin(async (admin) => (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 1);
  const status = await runNpx(url, ['knex', 'migrate:status']);
  t.not(status.code, 0, shown(status));
  t.false(await exists(), 'migrate:status created no database');
  const migrate = await runNpx(url, ['knex', 'migrate:latest'], 60_000, { LOG_LEVEL: 'verbose' });
  t.is(migrate.code, 0, shown(migrate));
  t.deepEqual(await missingMigrations(url), []);
});

// A release's code against a database without its migrations sends what the older functions do
// not take (a key precondition with a holder): an ingested event would be rejected for good.
test('serve, catch-up, append and rebuild-projections refuse a database behind this release\'s migrations, naming them; status shows them; once migrated, they run', async (t) => {
  const db = await freshDatabase(t, { migrated: false });
  const env = { DATABASE_URL: db.url };
  // Never migrated: every command that reads the log says so (rather than a missing relation).
  // (rebuild-projections is a bin of its own: run as such.)
  const run = (args: string[]) => (args[0] === 'rebuild-projections' ? runRebuild(db.url, args.slice(1)) : runCli(args, { env, input: '' }));
  for (const args of [['catch-up'], ['status'], ['export'], ['diagram'], ['rebuild-projections', '--dry-run']]) {
    const never = await run(args);
    t.is(never.code, 2, shown(never));
    t.is(never.stderr, 'error: the database has not been migrated: run npx knex migrate:latest (or serve --migrate)\n', args.join(' '));
  }

  await migrateLatest(db.url);
  const knex = knexFactory(knexConfig(db.url));
  try {
    await knex.migrate.down({ name: '20260101001200_key_preconditions_with_holder.ts' });
  } finally {
    await knex.destroy();
  }
  for (const args of [['serve', '--no-ingest'], ['catch-up'], ['append', '-'], ['rebuild-projections', '--dry-run']]) {
    const behind = await run(args);
    t.is(behind.code, 2, shown(behind));
    t.is(behind.stderr, 'error: the database lacks 1 migration of this release (20260101001200_key_preconditions_with_holder.ts): run npx knex migrate:latest (or serve --migrate)\n', args.join(' '));
  }
  // Reading goes on, and status says what is missing.
  const exported = await runCli(['export'], { env });
  t.is(exported.code, 0, shown(exported));
  const status = await runCli(['status'], { env: { ...env, NATS_URL: 'nats://127.0.0.1:1' } });
  t.is(status.code, 0, shown(status));
  t.regex(status.stdout, /^migrations pending: 20260101001200_key_preconditions_with_holder\.ts \(run npx knex migrate:latest\)\n/);
  await migrateLatest(db.url);
  const caughtUp = await runCli(['catch-up'], { env });
  t.is(caughtUp.code, 0, shown(caughtUp));

  // A database a newer release migrated (an older pod in a rolling upgrade): nothing is missing,
  // and the commands run (regression: Knex's check called the migration directory corrupt).
  await withClient(db.url, (client) => client.query(`INSERT INTO knex.knex_migrations (name, batch, migration_time) VALUES ('20990101000000_from_a_newer_release.ts', 9, now())`));
  for (const args of [['status'], ['catch-up'], ['export']]) {
    const ahead = await run(args);
    t.is(ahead.code, 0, shown(ahead));
  }
});
