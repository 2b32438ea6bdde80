import type pg from 'pg';

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
    if (!table) info.set(row.table, (table = { columns: new Map(), idSequence: undefined, rank: 0 }));
    table.columns.set(row.column, { type: row.type });
    if (row.column === 'id' && row.sequence) table.idSequence = row.sequence;
  }
  const missing = tables.filter((table) => !info.has(table));
  if (missing.length) throw new Error(`projection tables missing from schema ${schema}: ${missing.join(', ')} (run knex migrate:latest)`);

  const { rows: edges } = await client.query<ForeignKeyEdge>(
    `SELECT child.relname AS child, parent.relname AS parent,
            bool_or(NOT a.attnotnull) AS nullable
       FROM pg_constraint f
       JOIN pg_class child ON child.oid = f.conrelid
       JOIN pg_class parent ON parent.oid = f.confrelid
       JOIN pg_namespace n ON n.oid = child.relnamespace
       JOIN pg_attribute a ON a.attrelid = f.conrelid AND a.attnum = ANY(f.conkey)
      WHERE f.contype = 'f' AND n.nspname = $1 AND child.relname = ANY($2) AND child.oid <> parent.oid
      GROUP BY f.oid, child.relname, parent.relname
      ORDER BY 1, 2`,
    [schema, tables],
  );
  for (const [table, rank] of foreignKeyOrder(tables, edges)) info.get(table)!.rank = rank;
  return info;
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
