/**
 * Set-based foreign-key checks. PostgreSQL checks a foreign key with one trigger call per inserted
 * row (an SPI query and a row lock on the parent): in a catch-up of a channel sync that is a third
 * of the database's work, 2 checks for each of the package builds. For a large statement
 * the runner turns the table's triggers off (`session_replication_role = replica`, as logical
 * replication's apply does) and checks the statement's keys afterwards, once per foreign key of
 * the batch, over the distinct keys: the same guarantee (each parent exists and is locked FOR KEY
 * SHARE, as the trigger locks it, so no concurrent transaction can delete it before we commit)
 * for a few queries per batch. Only statements whose end state is the rows as given qualify
 * (statements.ts, `checked`); updates, deletes and raw statements always run with triggers on, so
 * cascades and the parent side of every key work as usual.
 *
 * Turning triggers off needs superuser or, from PostgreSQL 15, `GRANT SET ON PARAMETER
 * session_replication_role TO <role>`. Without it the triggers check row by row, as before.
 */
import type pg from 'pg';
import type { Row } from './definition.js';
import type { ForeignKey, TableInfo } from './columns.js';
import { recordset, type Statement } from './statements.js';
import { quoteIdent as quote } from '../log/postgres/sql.js';

export interface KeyCheck extends Statement {
  table: string;
  key: ForeignKey;
}

/** Whether this session's role may turn triggers off (see above). */
export async function mayTurnTriggersOff(client: pg.ClientBase): Promise<boolean> {
  await client.query('BEGIN');
  try {
    await client.query('SET LOCAL session_replication_role = replica');
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === '42501') return false; // insufficient_privilege
    throw error;
  } finally {
    await client.query('ROLLBACK');
  }
}

/**
 * One query per foreign key of the tables written, over the distinct non-NULL keys of their rows
 * (MATCH SIMPLE: a key with a NULL column is not checked); each returns a key whose parent row is
 * missing, if any. Pure.
 */
export function keyChecks(written: { table: string; rows: Row[] }[], tables: Map<string, TableInfo>): KeyCheck[] {
  // Per table and constraint, in order of first appearance: its distinct keys.
  const keysOf = new Map<string, { table: string; key: ForeignKey; distinct: Map<unknown, Row> }>();
  for (const { table, rows } of written) {
    for (const key of tables.get(table)!.foreignKeys) {
      const id = `${table}\0${key.name}`;
      const entry = keysOf.get(id) ?? { table, key, distinct: new Map<unknown, Row>() };
      keysOf.set(id, entry);
      for (const row of rows) {
        const values = key.columns.map((column) => row[column]);
        if (values.some((value) => value === null || value === undefined)) continue;
        // A one-column key (all of conda-store's) is its own map key: no string per row.
        const id = values.length === 1 ? values[0] : JSON.stringify(values);
        if (!entry.distinct.has(id)) entry.distinct.set(id, Object.fromEntries(values.map((value, i) => [`k${i}`, value])));
      }
    }
  }
  return [...keysOf.values()].flatMap(({ table, key, distinct }) => {
    if (!distinct.size) return [];
    const k = recordset(tables, table, 'k', key.columns.map((column, i) => [`k${i}`, column]));
    const parentMatches = key.parentColumns.map((column, i) => `p.${quote(column)} = k.k${i}`).join(' AND ');
    const foundMatches = key.columns.map((_, i) => `f.k${i} = k.k${i}`).join(' AND ');
    // Each key looked up in the parent's unique index (a LATERAL subquery with a locking clause is
    // never flattened into a join). As a join, the planner, going by statistics taken while the
    // parent was small (the usual case during a catch-up, when parent and child grow together),
    // read the whole parent and hashed it, for every batch: 5.7 ms instead of 0.5 ms for 125 keys
    // against 50,000 packages, and growing with the table.
    const text =
      `WITH k AS (SELECT * FROM ${k}), ` +
      `found AS (SELECT k.* FROM k CROSS JOIN LATERAL (SELECT 1 FROM ${key.parent} p WHERE ${parentMatches} FOR KEY SHARE OF p) held) ` +
      `SELECT k.* FROM k WHERE NOT EXISTS (SELECT 1 FROM found f WHERE ${foundMatches}) LIMIT 1`;
    return [{ table, key, text, values: [JSON.stringify([...distinct.values()])] }];
  });
}

/** The error PostgreSQL itself raises for the key (SQLSTATE 23503, same message and detail). */
export function foreignKeyViolation(check: KeyCheck, missing: Row): Error {
  const values = check.key.columns.map((_, i) => String(missing[`k${i}`]));
  return Object.assign(new Error(`insert or update on table "${check.table}" violates foreign key constraint "${check.key.name}"`), {
    code: '23503',
    table: check.table,
    constraint: check.key.name,
    detail: `Key (${check.key.columns.join(', ')})=(${values.join(', ')}) is not present in table "${check.key.parentTable}".`,
  });
}
