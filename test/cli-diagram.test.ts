/**
 * `conda-store-events diagram`: the ER diagram of the projection tables, read from a migrated
 * database by the real CLI in a child process.
 */
import { parse } from '@ts-graphviz/ast';
import test from 'ava';
import pg from 'pg';
import { allProjections } from '../projections/index.js';
import { runCli } from './helpers/cli.js';
import { freshDatabase } from './helpers/database.js';

const TABLES = [...new Set(allProjections.flatMap((projection) => projection.tables))].sort();

/** The foreign keys between the projection tables, as the catalog has them: "child.column -> parent". */
async function foreignKeys(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ key: string }>(
      `SELECT child.relname || '.' || a.attname || ' -> ' || parent.relname AS key
         FROM pg_constraint f
         JOIN pg_class child ON child.oid = f.conrelid
         JOIN pg_class parent ON parent.oid = f.confrelid
         JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = f.conkey[1]
        WHERE f.contype = 'f' AND child.relname = ANY($1) AND parent.relname = ANY($1)`,
      [TABLES],
    );
    return rows.map((row) => row.key).sort();
  } finally {
    await client.end();
  }
}

test('diagram prints a Mermaid erDiagram of every projection table, its columns and keys, and every foreign key between them', async (t) => {
  const db = await freshDatabase(t);
  const result = await runCli(['diagram'], { env: { DATABASE_URL: db.url } });
  t.is(result.code, 0, result.stderr);
  const lines = result.stdout.split('\n');
  t.is(lines[0], 'erDiagram');
  t.deepEqual(lines.filter((line) => /^ {2}\w+ \{$/.test(line)).map((line) => line.trim().slice(0, -2)).sort(), TABLES);
  // The namespace block, as the table is (conda-store-tables.md).
  const namespace = lines.slice(lines.indexOf('  namespace {') + 1, lines.indexOf('  }', lines.indexOf('  namespace {')));
  t.deepEqual(namespace, [
    '    integer id PK',
    '    character_varying(255) name UK "nullable"',
    '    timestamp_without_time_zone deleted_on "nullable"',
    '    json metadata_ "nullable"',
  ]);
  // A relationship per foreign key: a NOT NULL key's parent is exactly one, a nullable one's zero or one.
  const relations = lines.filter((line) => line.includes('--o{'));
  t.is(relations.length, (await foreignKeys(db.url)).length);
  t.true(relations.includes('  namespace ||--o{ environment : "namespace_id"'));
  t.true(relations.includes('  build |o--o{ environment : "current_build_id"'));
});

test('diagram --format dot prints a Graphviz digraph that parses, one node per table and one edge per foreign key', async (t) => {
  const db = await freshDatabase(t);
  const result = await runCli(['diagram', '--format', 'dot'], { env: { DATABASE_URL: db.url } });
  t.is(result.code, 0, result.stderr);
  const [graph] = parse(result.stdout).children;
  t.is(graph!.type, 'Graph');
  const statements = graph!.children as { type: string; id?: { value: string }; targets?: { id: { value: string }; port?: { value: string } }[] }[];
  t.deepEqual(statements.filter((s) => s.type === 'Node').map((s) => s.id!.value).sort(), TABLES);
  const edges = statements
    .filter((s) => s.type === 'Edge')
    .map((s) => `${s.targets![0]!.id.value}.${s.targets![0]!.port!.value} -> ${s.targets![1]!.id.value}`)
    .sort();
  t.deepEqual(edges, await foreignKeys(db.url));
});

test('diagram with an unknown format exits 2 naming the formats; on a database without the tables it exits 2 and says to migrate', async (t) => {
  const db = await freshDatabase(t);
  const unknown = await runCli(['diagram', '--format', 'svg'], { env: { DATABASE_URL: db.url } });
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /argument 'svg' is invalid\. Allowed choices are mermaid, dot/);
  t.is(unknown.stdout, '');

  const empty = await freshDatabase(t, { migrated: false });
  const missing = await runCli(['diagram'], { env: { DATABASE_URL: empty.url } });
  t.is(missing.code, 2);
  t.is(missing.stderr, 'error: the database has not been migrated: run npx knex migrate:latest (or serve --migrate)\n');
  t.is(missing.stdout, '');

  const help = await runCli(['diagram', '--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /--format <format>/);
});
