/**
 * What PostgreSQL says a schema and its tables look like, as plain data that `t.deepEqual` can
 * compare: against test/schema/conda-store-spec.ts, or against a snapshot taken before an
 * operation that must leave a table's definition unchanged (e.g. a projection rebuild that
 * swaps tables).
 *
 * Lists are in a fixed order (columns by position, everything else by name in code-unit order)
 * so that two descriptions of the same definition are deepEqual.
 */
import type pg from 'pg';

/** Anything with node-postgres' `query` (a Client, a PoolClient, a Pool). */
export interface Queryable {
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export interface ColumnDefinition {
  name: string;
  /** `information_schema.columns.data_type`: 'integer', 'character varying', 'json', ... */
  dataType: string;
  /** `character_maximum_length`: n for varchar(n), null for varchar without length and non-character types. */
  maxLength: number | null;
  /** `is_nullable = 'YES'`. */
  nullable: boolean;
  /** `column_default` as PostgreSQL prints it, e.g. `nextval('build_id_seq'::regclass)`, `1`, `false`. */
  default: string | null;
}

export type ConstraintType = 'PRIMARY KEY' | 'UNIQUE' | 'FOREIGN KEY' | 'CHECK' | 'EXCLUDE' | 'TRIGGER';
export type ReferentialAction = 'NO ACTION' | 'RESTRICT' | 'CASCADE' | 'SET NULL' | 'SET DEFAULT';

export interface ConstraintDefinition {
  name: string;
  type: ConstraintType;
  /** Constrained columns, in the constraint's order. */
  columns: string[];
  /** Foreign keys only: the referenced table (schema-qualified when in another schema) and columns. */
  references: { table: string; columns: string[] } | null;
  /** Foreign keys only. */
  onDelete: ReferentialAction | null;
  onUpdate: ReferentialAction | null;
  deferrable: boolean;
  initiallyDeferred: boolean;
  /** CHECK constraints only: `pg_get_constraintdef`. */
  check: string | null;
}

export interface IndexDefinition {
  name: string;
  /** Key columns (or expressions), in index order. */
  columns: string[];
  unique: boolean;
  primary: boolean;
  /** Access method: 'btree', 'gin', ... */
  method: string;
  /** Partial-index predicate, or null. */
  predicate: string | null;
}

export interface SequenceDefinition {
  name: string;
  /** `<table>.<column>` whose sequence it is (OWNED BY, as `serial` does), or null if not owned by a column. */
  ownedBy: string | null;
  /** How it is owned: 'serial' (OWNED BY, `pg_depend` type `a`), 'identity' (`i`), or null. */
  ownership: 'serial' | 'identity' | null;
  dataType: string;
  start: string;
  increment: string;
  minValue: string;
  maxValue: string;
  cache: string;
  cycle: boolean;
}

export interface TableDefinition {
  columns: ColumnDefinition[];
  constraints: ConstraintDefinition[];
  indexes: IndexDefinition[];
  /** The sequences owned by this table's columns. */
  sequences: SequenceDefinition[];
}

export type RelationKind =
  | 'table'
  | 'partitioned table'
  | 'view'
  | 'materialized view'
  | 'sequence'
  | 'index'
  | 'partitioned index'
  | 'foreign table'
  | 'composite type'
  | 'toast table';

export interface Relation {
  name: string;
  kind: RelationKind;
}

export interface TypeDefinition {
  name: string;
  kind: 'enum' | 'domain' | 'composite' | 'range' | 'multirange' | 'base' | 'pseudo';
  /** Enum labels in order; empty for other kinds. */
  labels: string[];
}

const RELATION_KINDS: Record<string, RelationKind> = {
  r: 'table',
  p: 'partitioned table',
  v: 'view',
  m: 'materialized view',
  S: 'sequence',
  i: 'index',
  I: 'partitioned index',
  f: 'foreign table',
  c: 'composite type',
  t: 'toast table',
};

const CONSTRAINT_TYPES: Record<string, ConstraintType> = {
  p: 'PRIMARY KEY',
  u: 'UNIQUE',
  f: 'FOREIGN KEY',
  c: 'CHECK',
  x: 'EXCLUDE',
  t: 'TRIGGER',
};

const ACTIONS: Record<string, ReferentialAction> = {
  a: 'NO ACTION',
  r: 'RESTRICT',
  c: 'CASCADE',
  n: 'SET NULL',
  d: 'SET DEFAULT',
};

const TYPE_KINDS: Record<string, TypeDefinition['kind']> = {
  e: 'enum',
  d: 'domain',
  c: 'composite',
  r: 'range',
  m: 'multirange',
  b: 'base',
  p: 'pseudo',
};

function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Every relation in `schema` (tables, views, sequences, indexes, ...), by name. */
export async function listRelations(db: Queryable, schema: string): Promise<Relation[]> {
  const { rows } = await db.query<{ name: string; relkind: string }>(
    `SELECT c.relname::text AS name, c.relkind::text AS relkind
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1`,
    [schema],
  );
  return rows
    .map((row) => ({ name: row.name, kind: RELATION_KINDS[row.relkind] ?? (row.relkind as RelationKind) }))
    .sort(byName);
}

/** The names of the ordinary and partitioned tables in `schema`, sorted. */
export async function listTables(db: Queryable, schema: string): Promise<string[]> {
  return (await listRelations(db, schema))
    .filter((relation) => relation.kind === 'table' || relation.kind === 'partitioned table')
    .map((relation) => relation.name);
}

/**
 * The types defined in `schema` in their own right (CREATE TYPE / CREATE DOMAIN): not the row
 * type every table, view or sequence gets, nor the array type every type gets.
 */
export async function listTypes(db: Queryable, schema: string): Promise<TypeDefinition[]> {
  const { rows } = await db.query<{ name: string; typtype: string; labels: string[] }>(
    `SELECT t.typname::text AS name, t.typtype::text AS typtype,
            ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder) AS labels
       FROM pg_type t
       JOIN pg_namespace n ON n.oid = t.typnamespace
       LEFT JOIN pg_class c ON c.oid = t.typrelid
      WHERE n.nspname = $1
        AND (t.typrelid = 0 OR c.relkind = 'c')
        AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.oid = t.typelem AND e.typarray = t.oid)`,
    [schema],
  );
  return rows
    .map((row) => ({ name: row.name, kind: TYPE_KINDS[row.typtype] ?? 'base', labels: row.labels }))
    .sort(byName);
}

/** Every pg_type row in `schema`, implicit row and array types included (empty once all tables are gone). */
export async function listAllTypeNames(db: Queryable, schema: string): Promise<string[]> {
  const { rows } = await db.query<{ name: string }>(
    `SELECT t.typname::text AS name FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1`,
    [schema],
  );
  return rows.map((row) => row.name).sort();
}

export async function describeColumns(db: Queryable, schema: string, table: string): Promise<ColumnDefinition[]> {
  const { rows } = await db.query<{
    name: string;
    data_type: string;
    max_length: number | null;
    is_nullable: string;
    column_default: string | null;
  }>(
    `SELECT column_name::text AS name,
            data_type::text AS data_type,
            character_maximum_length::int AS max_length,
            is_nullable::text AS is_nullable,
            column_default::text AS column_default
       FROM information_schema.columns
      WHERE table_schema = $1 AND table_name = $2
      ORDER BY ordinal_position`,
    [schema, table],
  );
  return rows.map((row) => ({
    name: row.name,
    dataType: row.data_type,
    maxLength: row.max_length,
    nullable: row.is_nullable === 'YES',
    default: row.column_default,
  }));
}

export async function describeConstraints(db: Queryable, schema: string, table: string): Promise<ConstraintDefinition[]> {
  const { rows } = await db.query<{
    name: string;
    contype: string;
    columns: string[];
    ref_schema: string | null;
    ref_table: string | null;
    ref_columns: string[];
    confdeltype: string;
    confupdtype: string;
    condeferrable: boolean;
    condeferred: boolean;
    definition: string;
  }>(
    `SELECT c.conname::text AS name,
            c.contype::text AS contype,
            ARRAY(SELECT a.attname::text
                    FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) AS columns,
            rn.nspname::text AS ref_schema,
            rt.relname::text AS ref_table,
            ARRAY(SELECT a.attname::text
                    FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum
                   ORDER BY k.ord) AS ref_columns,
            c.confdeltype::text AS confdeltype,
            c.confupdtype::text AS confupdtype,
            c.condeferrable,
            c.condeferred,
            pg_get_constraintdef(c.oid) AS definition
       FROM pg_constraint c
       JOIN pg_class t ON t.oid = c.conrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
       LEFT JOIN pg_class rt ON rt.oid = c.confrelid
       LEFT JOIN pg_namespace rn ON rn.oid = rt.relnamespace
      WHERE n.nspname = $1 AND t.relname = $2`,
    [schema, table],
  );
  return rows
    .map((row): ConstraintDefinition => {
      const type = CONSTRAINT_TYPES[row.contype] ?? (row.contype as ConstraintType);
      const foreign = type === 'FOREIGN KEY';
      return {
        name: row.name,
        type,
        columns: row.columns,
        references:
          foreign && row.ref_table
            ? {
                table: row.ref_schema === schema ? row.ref_table : `${row.ref_schema}.${row.ref_table}`,
                columns: row.ref_columns,
              }
            : null,
        onDelete: foreign ? (ACTIONS[row.confdeltype] ?? null) : null,
        onUpdate: foreign ? (ACTIONS[row.confupdtype] ?? null) : null,
        deferrable: row.condeferrable,
        initiallyDeferred: row.condeferred,
        check: type === 'CHECK' ? row.definition : null,
      };
    })
    .sort(byName);
}

/** Every index on the table, those backing PRIMARY KEY / UNIQUE constraints included. */
export async function describeIndexes(db: Queryable, schema: string, table: string): Promise<IndexDefinition[]> {
  const { rows } = await db.query<{
    name: string;
    columns: string[];
    unique: boolean;
    primary: boolean;
    method: string;
    predicate: string | null;
  }>(
    `SELECT i.relname::text AS name,
            ARRAY(SELECT pg_get_indexdef(x.indexrelid, k, true)
                    FROM generate_series(1, x.indnkeyatts) AS k
                   ORDER BY k) AS columns,
            x.indisunique AS unique,
            x.indisprimary AS primary,
            am.amname::text AS method,
            pg_get_expr(x.indpred, x.indrelid, true) AS predicate
       FROM pg_index x
       JOIN pg_class i ON i.oid = x.indexrelid
       JOIN pg_am am ON am.oid = i.relam
       JOIN pg_class t ON t.oid = x.indrelid
       JOIN pg_namespace n ON n.oid = t.relnamespace
      WHERE n.nspname = $1 AND t.relname = $2`,
    [schema, table],
  );
  return rows
    .map((row) => ({
      name: row.name,
      columns: row.columns,
      unique: row.unique,
      primary: row.primary,
      method: row.method,
      predicate: row.predicate,
    }))
    .sort(byName);
}

const SEQUENCE_SELECT = `
  SELECT s.relname::text AS name,
         t.relname::text AS owner_table,
         a.attname::text AS owner_column,
         d.deptype::text AS deptype,
         format_type(q.seqtypid, NULL) AS data_type,
         q.seqstart::text AS start,
         q.seqincrement::text AS increment,
         q.seqmin::text AS min_value,
         q.seqmax::text AS max_value,
         q.seqcache::text AS cache,
         q.seqcycle AS cycle
    FROM pg_class s
    JOIN pg_namespace n ON n.oid = s.relnamespace
    JOIN pg_sequence q ON q.seqrelid = s.oid
    LEFT JOIN pg_depend d
           ON d.classid = 'pg_class'::regclass AND d.objid = s.oid
          AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0
          AND d.deptype IN ('a', 'i')
    LEFT JOIN pg_class t ON t.oid = d.refobjid
    LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   WHERE s.relkind = 'S' AND n.nspname = $1`;

interface SequenceRow {
  name: string;
  owner_table: string | null;
  owner_column: string | null;
  deptype: string | null;
  data_type: string;
  start: string;
  increment: string;
  min_value: string;
  max_value: string;
  cache: string;
  cycle: boolean;
}

function toSequence(row: SequenceRow): SequenceDefinition {
  return {
    name: row.name,
    ownedBy: row.owner_table ? `${row.owner_table}.${row.owner_column}` : null,
    ownership: row.deptype === 'a' ? 'serial' : row.deptype === 'i' ? 'identity' : null,
    dataType: row.data_type,
    start: row.start,
    increment: row.increment,
    minValue: row.min_value,
    maxValue: row.max_value,
    cache: row.cache,
    cycle: row.cycle,
  };
}

/** Every sequence in `schema`, owned or not. */
export async function listSequences(db: Queryable, schema: string): Promise<SequenceDefinition[]> {
  const { rows } = await db.query<SequenceRow>(SEQUENCE_SELECT, [schema]);
  return rows.map(toSequence).sort(byName);
}

/** The sequences owned by a column of `table` (a sequence is always in its owner's schema). */
export async function describeSequences(db: Queryable, schema: string, table: string): Promise<SequenceDefinition[]> {
  const { rows } = await db.query<SequenceRow>(`${SEQUENCE_SELECT} AND t.relname = $2`, [schema, table]);
  return rows.map(toSequence).sort(byName);
}

export async function describeTable(db: Queryable, schema: string, table: string): Promise<TableDefinition> {
  return {
    columns: await describeColumns(db, schema, table),
    constraints: await describeConstraints(db, schema, table),
    indexes: await describeIndexes(db, schema, table),
    sequences: await describeSequences(db, schema, table),
  };
}

/** Every table of `schema`, described, keyed by table name. */
export async function describeSchema(db: Queryable, schema: string): Promise<Record<string, TableDefinition>> {
  const result: Record<string, TableDefinition> = {};
  for (const table of await listTables(db, schema)) {
    result[table] = await describeTable(db, schema, table);
  }
  return result;
}
