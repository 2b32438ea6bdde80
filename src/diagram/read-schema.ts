/**
 * The projection tables as an ER diagram sees them, read from the live database: columns with
 * their types and keys, and the foreign keys between the tables (the same catalog reads as the
 * runner's, src/projection/columns.ts, plus nullability and primary and unique keys).
 */
import type pg from 'pg';
import { sqlFile } from '../log/postgres/sql.js';
import { describeTables } from '../projection/columns.js';

const COLUMN_KEYS_SQL = sqlFile(import.meta.url, 'column-keys.sql');

export interface DiagramColumn {
  name: string;
  /** As PostgreSQL formats it: `integer`, `character varying(255)`, ... */
  type: string;
  notNull: boolean;
  primaryKey: boolean;
  /** Part of a unique constraint (alone or with other columns). */
  unique: boolean;
  /** Part of a foreign key to another table of the diagram. */
  foreignKey: boolean;
}

export interface DiagramTable {
  name: string;
  columns: DiagramColumn[];
}

/** A foreign key between two tables of the diagram: `child.columns` references `parent.parentColumns`. */
export interface DiagramRelation {
  name: string;
  child: string;
  columns: string[];
  parent: string;
  parentColumns: string[];
  /** A column of the key may be NULL: a child row need not have a parent. */
  optional: boolean;
}

export interface DiagramSchema {
  tables: DiagramTable[];
  relations: DiagramRelation[];
}

/** Reads `tables` of `schema`; throws, naming them, when some are missing (not migrated). */
export async function readSchema(client: pg.ClientBase, tables: string[], schema = 'public'): Promise<DiagramSchema> {
  const info = await describeTables(client, tables, schema);
  const relations: DiagramRelation[] = [...info]
    .flatMap(([child, table]) => table.foreignKeys.map((key) => ({ child, key })))
    .filter(({ key }) => info.has(key.parentTable))
    .map(({ child, key }) => ({ name: key.name, child, columns: key.columns, parent: key.parentTable, parentColumns: key.parentColumns, optional: false }));
  const { rows } = await client.query<{ table: string; column: string; not_null: boolean; primary_key: boolean; unique: boolean }>(COLUMN_KEYS_SQL, [schema, tables]);
  const byTable = new Map<string, DiagramColumn[]>();
  for (const row of rows) {
    const foreignKey = relations.some((relation) => relation.child === row.table && relation.columns.includes(row.column));
    const column = { name: row.column, type: info.get(row.table)!.columns.get(row.column)!.type, notNull: row.not_null, primaryKey: row.primary_key, unique: row.unique, foreignKey };
    byTable.set(row.table, [...(byTable.get(row.table) ?? []), column]);
  }
  for (const relation of relations) {
    relation.optional = relation.columns.some((name) => !byTable.get(relation.child)!.find((column) => column.name === name)!.notNull);
  }
  return {
    tables: [...byTable].map(([name, columns]) => ({ name, columns })).sort((a, b) => a.name.localeCompare(b.name)),
    relations: relations.sort((a, b) => a.child.localeCompare(b.child) || a.name.localeCompare(b.name)),
  };
}
