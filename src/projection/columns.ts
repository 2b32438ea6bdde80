import type pg from 'pg';

export interface ColumnInfo {
  /** The column's type as a cast: `integer`, `character varying(255)`, `json`, ... */
  type: string;
  json: boolean;
}

export interface TableInfo {
  columns: Map<string, ColumnInfo>;
  /** The sequence behind an `id` column, if any (to keep it past the highest id). */
  idSequence: string | undefined;
  /** Position in foreign-key order: a table's parents have lower ranks (cycles broken arbitrarily but stably). */
  rank: number;
}

/**
 * Column types of the projection tables, read once from the catalog: the runner casts every
 * parameter to its column's type, so set-based statements (unnest of arrays) need no guessing.
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
    if (!table) info.set(row.table, (table = { columns: new Map(), idSequence: undefined, rank: 0 }));
    table.columns.set(row.column, { type: row.type, json: row.type === 'json' || row.type === 'jsonb' });
    if (row.column === 'id' && row.sequence) table.idSequence = row.sequence;
  }
  const missing = tables.filter((table) => !info.has(table));
  if (missing.length) throw new Error(`projection tables missing from schema ${schema}: ${missing.join(', ')} (run knex migrate:latest)`);

  const { rows: edges } = await client.query<{ child: string; parent: string }>(
    `SELECT child.relname AS child, parent.relname AS parent
       FROM pg_constraint f
       JOIN pg_class child ON child.oid = f.conrelid
       JOIN pg_class parent ON parent.oid = f.confrelid
       JOIN pg_namespace n ON n.oid = child.relnamespace
      WHERE f.contype = 'f' AND n.nspname = $1 AND child.relname = ANY($2) AND child.oid <> parent.oid
      ORDER BY 1, 2`,
    [schema, tables],
  );
  const parents = new Map<string, string[]>();
  for (const edge of edges) parents.set(edge.child, [...(parents.get(edge.child) ?? []), edge.parent]);
  // Depth-first topological order; an edge back into the current path (environment <-> build) is skipped.
  const state = new Map<string, 'visiting' | 'done'>();
  let next = 0;
  const visit = (table: string) => {
    if (state.has(table)) return;
    state.set(table, 'visiting');
    for (const parent of parents.get(table) ?? []) if (state.get(parent) !== 'visiting') visit(parent);
    state.set(table, 'done');
    const entry = info.get(table);
    if (entry) entry.rank = next++;
  };
  for (const table of [...tables].sort()) visit(table);
  return info;
}
