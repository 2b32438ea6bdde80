/**
 * Set-based foreign-key checks (src/projection/key-checks.ts): which statements may run with their
 * table's triggers off, the checks built for them, and who may turn triggers off. The end-to-end
 * cases (same rows either way; a broken key stops the projection) are in projection-runner.test.ts.
 */
import { randomUUID } from 'node:crypto';
import test from 'ava';
import type pg from 'pg';
import { describeTables, type ForeignKey, type TableInfo } from '../src/projection/columns.js';
import type { RowChange } from '../src/projection/definition.js';
import { foreignKeyViolation, keyChecks, mayTurnTriggersOff } from '../src/projection/key-checks.js';
import { compileChanges } from '../src/projection/statements.js';
import { connect, freshDatabase, withAdmin, withClient } from './helpers/database.js';

const buildOfPackage: ForeignKey = {
  name: 'conda_package_build_package_id_fkey',
  columns: ['package_id'],
  parentTable: 'conda_package',
  parent: 'ONLY "public"."conda_package"',
  parentColumns: ['id'],
  matchSimple: true,
};

function table(columns: string[], extra: Partial<TableInfo> = {}): TableInfo {
  return {
    columns: new Map(columns.map((column) => [column, { type: 'integer' }])),
    idSequence: undefined,
    rank: 0,
    foreignKeys: [],
    referenced: new Set(),
    ownTriggers: false,
    ...extra,
  };
}

const tables = new Map<string, TableInfo>([
  ['conda_package', table(['id', 'n'], { referenced: new Set(['id']) })],
  ['conda_package_build', table(['id', 'package_id', 'n'], { foreignKeys: [buildOfPackage] })],
]);

const checkedOf = (change: RowChange) => compileChanges([change], tables)[0]!.checked;

test('an insert whose end state is its rows may run without triggers; an upsert that could keep or change other keys may not', (t) => {
  t.truthy(checkedOf({ op: 'insert', table: 'conda_package_build', row: { id: 1, package_id: 2, n: 0 } }));
  // The foreign key column left to its default: the rows do not say what the key will hold.
  t.falsy(checkedOf({ op: 'insert', table: 'conda_package_build', row: { id: 1, n: 0 } }));
  // DO NOTHING on a conflict keeps the row that is there, not the one checked.
  t.falsy(checkedOf({ op: 'upsert', table: 'conda_package_build', row: { id: 1, package_id: 2, n: 0 }, key: ['id'], update: [] }));
  t.truthy(checkedOf({ op: 'upsert', table: 'conda_package_build', row: { id: 1, package_id: 2, n: 0 }, key: ['id'] }));
  // Updating a column another table references would skip the parent side's ON UPDATE action.
  t.falsy(checkedOf({ op: 'upsert', table: 'conda_package', row: { id: 1, n: 0 }, key: ['n'] }));
  t.truthy(checkedOf({ op: 'upsert', table: 'conda_package', row: { id: 1, n: 0 }, key: ['id'] }));
  // A table with a trigger of its own never runs without it.
  const triggered = new Map([...tables, ['conda_package', table(['id', 'n'], { ownTriggers: true })]]);
  t.falsy(compileChanges([{ op: 'insert', table: 'conda_package', row: { id: 1, n: 0 } }], triggered)[0]!.checked);
  // Updates and deletes always run with their triggers (cascades, the parent side of keys).
  t.falsy(checkedOf({ op: 'update', table: 'conda_package_build', where: { id: 1 }, set: { package_id: 3 } }));
  t.falsy(checkedOf({ op: 'delete', table: 'conda_package', where: { id: 1 } }));
});

test('one check per foreign key over the distinct keys of the rows; NULL keys are not checked (MATCH SIMPLE)', (t) => {
  const rows = [{ package_id: 2 }, { package_id: 2 }, { package_id: null }, { package_id: 5 }];
  const checks = keyChecks([{ table: 'conda_package_build', rows }, { table: 'conda_package_build', rows: [{ package_id: 7 }] }], tables);
  t.is(checks.length, 1);
  t.deepEqual(JSON.parse(checks[0]!.values[0] as string), [{ k0: 2 }, { k0: 5 }, { k0: 7 }]);
  t.regex(checks[0]!.text, /CROSS JOIN LATERAL \(SELECT 1 FROM ONLY "public"\."conda_package" p WHERE p\."id" = k\.k0 FOR KEY SHARE OF p\)/);
  t.deepEqual(keyChecks([{ table: 'conda_package_build', rows: [{ package_id: null }] }], tables), []);
  t.deepEqual(keyChecks([{ table: 'conda_package', rows: [{ id: 1 }] }], tables), [], 'a table without foreign keys needs no check');
});

test("a violation reads as PostgreSQL's own: SQLSTATE 23503, the constraint, the key and the parent table", (t) => {
  const [check] = keyChecks([{ table: 'conda_package_build', rows: [{ package_id: 9 }] }], tables);
  const error = foreignKeyViolation(check!, { k0: 9 }) as Error & { code: string; constraint: string; detail: string };
  t.is(error.message, 'insert or update on table "conda_package_build" violates foreign key constraint "conda_package_build_package_id_fkey"');
  t.like(error, { code: '23503', constraint: 'conda_package_build_package_id_fkey', detail: 'Key (package_id)=(9) is not present in table "conda_package".' });
});

test('triggers may be turned off by a superuser, or by a role granted SET on session_replication_role; not by a plain role', async (t) => {
  const db = await freshDatabase(t);
  const role = `cse_test_${randomUUID().slice(0, 8)}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${role} LOGIN`));
  t.teardown(() => withAdmin((admin) => admin.query(`REVOKE SET ON PARAMETER session_replication_role FROM ${role}; DROP ROLE ${role}`)));
  const asRole = new URL(db.url);
  asRole.username = role;
  const may = (url: string) => withClient(url, mayTurnTriggersOff);
  t.true(await may(db.url), 'superuser');
  t.false(await may(asRole.toString()), 'plain role');
  await withAdmin((admin) => admin.query(`GRANT SET ON PARAMETER session_replication_role TO ${role}`));
  t.true(await may(asRole.toString()), 'granted');
});

test('from the catalog: a deferrable unique key keeps a table on its triggers; a parent is checked with ONLY unless partitioned', async (t) => {
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  await client.query(`
    CREATE SCHEMA k;
    CREATE TABLE k.parent (id int PRIMARY KEY);
    CREATE TABLE k.sharded (id int PRIMARY KEY) PARTITION BY RANGE (id);
    CREATE TABLE k.plain (id int PRIMARY KEY, parent_id int REFERENCES k.parent (id), sharded_id int REFERENCES k.sharded (id));
    CREATE TABLE k.deferred (id int PRIMARY KEY, parent_id int REFERENCES k.parent (id), code text UNIQUE DEFERRABLE INITIALLY DEFERRED);
  `);
  const tables = await describeTables(client, ['parent', 'sharded', 'plain', 'deferred'], 'k');
  t.false(tables.get('plain')!.ownTriggers);
  t.true(tables.get('deferred')!.ownTriggers, 'its unique key is checked by an internal trigger');
  t.deepEqual(tables.get('plain')!.foreignKeys.map((key) => key.parent).sort(), ['"k"."sharded"', 'ONLY "k"."parent"']);
  t.deepEqual([...tables.get('parent')!.referenced], ['id']);
  t.falsy(compileChanges([{ op: 'insert', table: 'deferred', row: { id: 1, parent_id: 1, code: 'a' } }], tables)[0]!.checked);
  t.truthy(compileChanges([{ op: 'insert', table: 'plain', row: { id: 1, parent_id: 1, sharded_id: 1 } }], tables)[0]!.checked);
});

/** How the plan of `statement` reads `relation`: its scan nodes (Seq Scan, Index Scan...). */
async function scansOf(client: pg.ClientBase, statement: { text: string; values: unknown[] }, relation: string): Promise<string[]> {
  const { rows: [plan] } = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>({ text: `EXPLAIN (FORMAT JSON) ${statement.text}`, values: statement.values });
  const scans: string[] = [];
  const walk = (node: PlanNode) => {
    if (node['Relation Name'] === relation && node['Node Type'] !== 'ModifyTable') scans.push(node['Node Type']);
    for (const child of node.Plans ?? []) walk(child);
  };
  walk(plan!['QUERY PLAN'][0]!.Plan);
  return scans;
}
type PlanNode = { 'Node Type': string; 'Relation Name'?: string; Plans?: PlanNode[] };

// Regression: the check joined the parent with the batch's keys, and the planner, going by
// statistics taken while the parent was small (a catch-up grows parent and child together), read
// the whole parent and hashed it for every batch. Each key is now looked up in the parent's index.
test('a key check looks each key up in the parent index, even when the parent has grown since its statistics', async (t) => {
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  await client.query('ANALYZE public.conda_package'); // statistics of an empty table
  await client.query(`INSERT INTO public.conda_channel (id, name) VALUES (1, 'main')`);
  await client.query(`INSERT INTO public.conda_package (id, channel_id, name, version) SELECT g, 1, 'p' || g, '1' FROM generate_series(1, 50000) g`);
  const tables = await describeTables(client, ['conda_package', 'conda_package_build'], 'public');
  const rows = Array.from({ length: 125 }, (_, i) => ({ package_id: 30_000 + i, channel_id: 1 }));
  const checks = keyChecks([{ table: 'conda_package_build', rows }], tables);
  const check = checks.find((c) => c.key.parentTable === 'conda_package')!;
  const scans = await scansOf(client, check, 'conda_package');
  t.deepEqual(scans, ['Index Scan'], `conda_package is read by: ${scans.join(', ')}`);
  t.deepEqual((await client.query(check.text, check.values)).rows, [], 'every key is there');
});

// Regression, same cause: an UPDATE or DELETE joined with its rows (a function the planner guesses
// at 100 rows) read the whole table for a batch of two rows once the table had grown since its
// statistics. The keys also go as an array of known length, which the planner probes the index with.
test('an UPDATE or DELETE of a few rows probes the table index, even when the table has grown since its statistics', async (t) => {
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  await client.query('ANALYZE public.build'); // statistics of an empty table
  await client.query(`
    INSERT INTO public.namespace (id, name) VALUES (1, 'ns');
    INSERT INTO public.specification (id, name, spec, sha256, created_on) VALUES (1, 's', '{}', 'x', now());
    INSERT INTO public.environment (id, namespace_id, name) VALUES (1, 1, 'e');
    INSERT INTO public.build (id, specification_id, environment_id, status) SELECT g, 1, 1, 'QUEUED' FROM generate_series(1, 50000) g;
  `);
  const tables = await describeTables(client, ['build'], 'public');
  const [update] = compileChanges([30_000, 30_001].map((id) => ({ op: 'update', table: 'build', where: { id }, set: { status: 'BUILDING' } })), tables);
  const [remove] = compileChanges([{ op: 'delete', table: 'build', where: { id: 40_000 } }], tables);
  for (const statement of [update!, remove!]) {
    const scans = await scansOf(client, statement, 'build');
    t.true(scans.length > 0 && scans.every((scan) => scan.startsWith('Index') || scan.startsWith('Bitmap')), `build is read by: ${scans.join(', ')}`);
  }
  // Run as a live batch does (inlined) and as a catch-up does (parameters): the same rows change.
  await client.query('BEGIN');
  await client.query(update!.text, update!.values);
  await client.query(remove!.inline!());
  const { rows } = await client.query<{ status: string; n: number }>("SELECT status, count(*)::int AS n FROM public.build WHERE id IN (30000, 30001, 40000) GROUP BY status");
  await client.query('ROLLBACK');
  t.deepEqual(rows, [{ status: 'BUILDING', n: 2 }]);
});
