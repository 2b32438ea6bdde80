import type pg from 'pg';
import { quoteIdent, sqlFile } from '../log/postgres/sql.js';

const FOREIGN_KEYS_SQL = sqlFile(import.meta.url, 'foreign-keys.sql');
const OWN_TRIGGERS_SQL = sqlFile(import.meta.url, 'own-triggers.sql');
const TABLE_STAMP_SQL = sqlFile(import.meta.url, 'table-stamp.sql');

export interface ColumnInfo {
  /** The column's type as a cast: `integer`, `character varying(255)`, `json`, ... */
  type: string;
}

export interface TableInfo {
  columns: Map<string, ColumnInfo>;
  /** The sequence behind an `id` column, if any (to keep it past the highest id). */
  idSequence: string | undefined;
  /** Position in foreign-key order: a table's parents have lower ranks (see foreignKeyOrder). */
  rank: number;
  /** Its foreign keys (this table is the child). */
  foreignKeys: ForeignKey[];
  /** Its columns that a foreign key of any table references (this table is the parent). */
  referenced: Set<string>;
  /** Its inserts need triggers beyond its foreign keys' (own triggers or rules, deferrable keys: own-triggers.sql). */
  ownTriggers: boolean;
}

export interface ForeignKey {
  /** The constraint's name, as errors name it. */
  name: string;
  columns: string[];
  /**
   * The parent table: its name, and how SQL names it: schema-qualified, with ONLY unless it is
   * partitioned, as PostgreSQL's own check does (a row of an inheriting table is no parent).
   */
  parentTable: string;
  parent: string;
  parentColumns: string[];
  /** MATCH SIMPLE (the default): a key with a NULL column is not checked. */
  matchSimple: boolean;
}

/**
 * Column types of the projection tables, read once from the catalog: the runner types every
 * field of its set-based statements as its column (json_to_recordset), so nothing is guessed.
 */
export async function describeTables(client: pg.ClientBase, tables: string[], schema = 'public'): Promise<Map<string, TableInfo>> {
  const { rows } = await client.query<{ table: string; column: string; type: string; sequence: string | null }>(
    `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
            pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS sequence
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = ANY($2) AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY c.relname, a.attnum`,
    [schema, tables],
  );
  const info = new Map<string, TableInfo>();
  for (const row of rows) {
    let table = info.get(row.table);
    if (!table) info.set(row.table, (table = { columns: new Map(), idSequence: undefined, rank: 0, foreignKeys: [], referenced: new Set(), ownTriggers: false }));
    table.columns.set(row.column, { type: row.type });
    if (row.column === 'id' && row.sequence) table.idSequence = row.sequence;
  }
  const missing = tables.filter((table) => !info.has(table));
  if (missing.length) throw new Error(`projection tables missing from schema ${schema}: ${missing.join(', ')} (run knex migrate:latest)`);

  const { rows: keys } = await client.query<ForeignKeyRow>(FOREIGN_KEYS_SQL, [schema, tables]);
  const edges: ForeignKeyEdge[] = [];
  for (const key of keys) {
    const child = key.child_schema === schema ? info.get(key.child) : undefined;
    const parent = key.parent_schema === schema ? info.get(key.parent_table) : undefined;
    for (const column of key.parent_columns) parent?.referenced.add(column);
    if (!child) continue;
    child.foreignKeys.push({
      name: key.name, columns: key.columns, parentTable: key.parent_table,
      parent: `${key.parent_partitioned ? '' : 'ONLY '}${quoteIdent(key.parent_schema)}.${quoteIdent(key.parent_table)}`,
      parentColumns: key.parent_columns, matchSimple: key.match_simple,
    });
    if (key.parent_schema === schema && key.child !== key.parent_table) edges.push({ child: key.child, parent: key.parent_table, nullable: key.nullable });
  }
  const { rows: triggered } = await client.query<{ table: string }>(OWN_TRIGGERS_SQL, [schema, tables]);
  for (const { table } of triggered) info.get(table)!.ownTriggers = true;
  for (const [table, rank] of foreignKeyOrder(tables, edges)) info.get(table)!.rank = rank;
  return info;
}

/**
 * A stamp of each of `tables` (table-stamp.sql), of what describeTables reads about it: while it is
 * the one taken before a description, the table's part of the description holds. A table missing
 * has none. About 0.5 ms for the one or two tables a batch inserts many rows into, 1.5 ms for a
 * group's 16, against 3 ms for describeTables.
 */
export async function tableStamps(client: pg.ClientBase, tables: string[], schema = 'public'): Promise<Map<string, string>> {
  const { rows } = await client.query<unknown[]>({ name: 'cse_table_stamp', ...tableStampsStatement(tables, schema), rowMode: 'array' });
  return stampsOf(rows);
}

/** tableStamps as a statement for a caller that runs it with others (the runner's batch steps), and its rows (as arrays) read back. */
export function tableStampsStatement(tables: string[], schema = 'public'): { text: string; values: unknown[] } {
  return { text: TABLE_STAMP_SQL, values: [schema, tables] };
}

export function stampsOf(rows: unknown[][]): Map<string, string> {
  return new Map(rows.map(([table, stamp]) => [String(table), String(stamp)]));
}

/**
 * The projection tables are not as the runner read them (a migration added a foreign key, a
 * trigger or a column, changed a type, renamed a sequence): it has read them again, and the batch,
 * rolled back, goes again at once with statements built from what they are now. Not the events'
 * fault: no projection stops for it (a transient error: transient.ts).
 */
export class TablesChangedError extends Error {
  constructor() {
    super('the projection tables changed since they were read (a migration): read again, applying the batch again');
    this.name = 'TablesChangedError';
  }
}

interface ForeignKeyRow {
  name: string;
  child_schema: string;
  child: string;
  columns: string[];
  parent_schema: string;
  parent_table: string;
  parent_partitioned: boolean;
  parent_columns: string[];
  match_simple: boolean;
  nullable: boolean;
}

export interface ForeignKeyEdge {
  child: string;
  parent: string;
  /** A column of the key may be NULL: a row can go in before its parent, and point at it later. */
  nullable: boolean;
}

/**
 * Ranks tables so that parents come before children: the order inserts must follow. A cycle
 * (environment.current_build_id <-> build.environment_id) is broken at a nullable key that closes
 * it, never at a NOT NULL one: an environment goes in before its first build, which sets
 * current_build_id later. Were it broken the other way, every batch with a new environment and its
 * first build would fail as a whole and be replayed event by event.
 */
export function foreignKeyOrder(tables: string[], edges: ForeignKeyEdge[]): Map<string, number> {
  const parentsOf = (kept: ForeignKeyEdge[]) => {
    const parents = new Map<string, string[]>();
    for (const edge of kept) parents.set(edge.child, [...(parents.get(edge.child) ?? []), edge.parent]);
    return parents;
  };
  const all = parentsOf(edges);
  const reaches = (from: string, to: string, seen = new Set<string>()): boolean =>
    from === to || (!seen.has(from) && (seen.add(from), (all.get(from) ?? []).some((next) => reaches(next, to, seen))));
  // A nullable edge child -> parent closes a cycle when the parent leads back to the child.
  const parents = parentsOf(edges.filter((edge) => !(edge.nullable && reaches(edge.parent, edge.child))));

  const state = new Map<string, 'visiting' | 'done'>();
  const ranks = new Map<string, number>();
  const visit = (table: string) => {
    if (state.has(table)) return;
    state.set(table, 'visiting');
    // A cycle of NOT NULL keys cannot be filled by any order; it is cut where found.
    for (const parent of parents.get(table) ?? []) if (state.get(parent) !== 'visiting') visit(parent);
    state.set(table, 'done');
    ranks.set(table, ranks.size);
  };
  for (const table of [...tables].sort()) visit(table);
  for (const table of ranks.keys()) if (!tables.includes(table)) ranks.delete(table);
  return ranks;
}
