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
    if (!table) info.set(row.table, (table = { columns: new Map(), idSequence: undefined }));
    table.columns.set(row.column, { type: row.type, json: row.type === 'json' || row.type === 'jsonb' });
    if (row.column === 'id' && row.sequence) table.idSequence = row.sequence;
  }
  const missing = tables.filter((table) => !info.has(table));
  if (missing.length) throw new Error(`projection tables missing from schema ${schema}: ${missing.join(', ')} (run knex migrate:latest)`);
  return info;
}
