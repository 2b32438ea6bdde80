/**
 * A projection table's definition as PostgreSQL holds it after the migrations: columns, sequences,
 * constraints and indexes, as DDL that recreates it in another schema. Read from the catalog with
 * `search_path` set to the table's schema, so that every name in the DDL is unqualified and
 * resolves, when run with the target schema first in `search_path`, to the target's objects.
 * Used to create rebuild shadow tables, and (hashed) as the schema part of a fingerprint.
 */
import type pg from 'pg';

export interface TableDefinition {
  table: string;
  /** CREATE SEQUENCE statements for the sequences its columns own (serial ids). */
  sequences: string[];
  /** CREATE TABLE with columns, defaults, NOT NULL, and the constraints a bulk load needs (PK, UNIQUE, CHECK). */
  create: string;
  /** ALTER SEQUENCE ... OWNED BY, once the table exists. */
  ownership: string[];
  /** What is cheaper to add after the load: foreign keys and plain indexes. */
  finish: string[];
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;

export async function readTableDefinitions(client: pg.ClientBase, schema: string, tables: string[]): Promise<TableDefinition[]> {
  await client.query(`SET search_path TO ${quote(schema)}`);
  try {
    const definitions: TableDefinition[] = [];
    for (const table of tables) definitions.push(await readOne(client, schema, table));
    return definitions;
  } finally {
    await client.query('RESET search_path');
  }
}

async function readOne(client: pg.ClientBase, schema: string, table: string): Promise<TableDefinition> {
  const { rows: [relation] } = await client.query<{ oid: number }>(
    `SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'r'`,
    [schema, table],
  );
  if (!relation) throw new Error(`table ${schema}.${table} does not exist (run knex migrate:latest)`);
  const { rows: columns } = await client.query<{ name: string; type: string; notnull: boolean; default: string | null }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
            pg_get_expr(d.adbin, d.adrelid) AS default
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [relation.oid],
  );
  const { rows: sequences } = await client.query<{ name: string; column: string; type: string; start: string; increment: string; min: string; max: string; cache: string; cycle: boolean }>(
    `SELECT s.relname AS name, a.attname AS column, format_type(q.seqtypid, NULL) AS type, q.seqstart AS start,
            q.seqincrement AS increment, q.seqmin AS min, q.seqmax AS max, q.seqcache AS cache, q.seqcycle AS cycle
       FROM pg_depend d
       JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
       JOIN pg_sequence q ON q.seqrelid = s.oid
       JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.refobjid = $1 AND d.deptype = 'a'
      ORDER BY s.relname`,
    [relation.oid],
  );
  const { rows: constraints } = await client.query<{ name: string; type: string; definition: string }>(
    `SELECT conname AS name, contype AS type, pg_get_constraintdef(oid) AS definition
       FROM pg_constraint WHERE conrelid = $1 ORDER BY contype, conname`,
    [relation.oid],
  );
  const { rows: indexes } = await client.query<{ definition: string }>(
    `SELECT pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid)
      ORDER BY c.relname`,
    [relation.oid],
  );

  const columnLines = columns.map((c) => `${quote(c.name)} ${c.type}${c.default ? ` DEFAULT ${c.default}` : ''}${c.notnull ? ' NOT NULL' : ''}`);
  const loadConstraints = constraints.filter((c) => c.type !== 'f').map((c) => `CONSTRAINT ${quote(c.name)} ${c.definition}`);
  return {
    table,
    sequences: sequences.map(
      (s) => `CREATE SEQUENCE ${quote(s.name)} AS ${s.type} INCREMENT ${s.increment} MINVALUE ${s.min} MAXVALUE ${s.max} START ${s.start} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ' NO CYCLE'}`,
    ),
    create: `CREATE TABLE ${quote(table)} (\n  ${[...columnLines, ...loadConstraints].join(',\n  ')}\n)`,
    ownership: sequences.map((s) => `ALTER SEQUENCE ${quote(s.name)} OWNED BY ${quote(table)}.${quote(s.column)}`),
    finish: [
      ...constraints.filter((c) => c.type === 'f').map((c) => `ALTER TABLE ${quote(table)} ADD CONSTRAINT ${quote(c.name)} ${c.definition}`),
      // pg_get_indexdef qualifies the table whatever the search_path: unqualify it.
      ...indexes.map((i) => i.definition.replace(` ON ${schema}.`, ' ON ').replace(` ON ${quote(schema)}.`, ' ON ')),
    ],
  };
}
