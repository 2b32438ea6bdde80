/**
 * From row changes to set-based SQL: changes of the same shape (same operation, table and columns)
 * become one statement over `unnest()` of one array per column, so a batch of 1,000 package
 * builds is one INSERT with 12 parameters, not 1,000 round trips. Updates, upserts, deletes and
 * raw statements keep their order and merge only with neighbours. Runs of plain inserts are
 * gathered per shape and written parents first (the tables' foreign-key order), since a channel
 * sync interleaves one package with its builds: without this, every few rows would be a statement.
 * Pure: the statements are run by the runner.
 */
import type { Row, RowChange } from './definition.js';
import type { TableInfo } from './columns.js';
import { quoteIdent as quote } from '../log/postgres/sql.js';

export interface Statement {
  text: string;
  values: unknown[];
}


function shapeOf(change: RowChange): string {
  switch (change.op) {
    case 'insert':
      return `insert|${change.table}|${Object.keys(change.row).join(',')}`;
    case 'upsert':
      return `upsert|${change.table}|${Object.keys(change.row).join(',')}|${change.key.join(',')}|${(change.update ?? ['*']).join(',')}`;
    case 'update':
      return `update|${change.table}|${Object.keys(change.where).join(',')}|${Object.keys(change.set).join(',')}`;
    case 'delete':
      return `delete|${change.table}|${Object.keys(change.where).join(',')}`;
    case 'sql':
      return 'sql'; // never merged
  }
}

/** The identity of the row a change aims at; two in one merged UPDATE/upsert would clash. */
function targetOf(change: RowChange): string | undefined {
  if (change.op === 'upsert') return JSON.stringify(change.key.map((k) => change.row[k]));
  if (change.op === 'update') return JSON.stringify(Object.values(change.where));
  return undefined;
}

export function compileChanges(changes: RowChange[], tables: Map<string, TableInfo>): Statement[] {
  const statements: Statement[] = [];
  let group: RowChange[] = [];
  let shape = '';
  let targets = new Set<string>();
  // Plain inserts since the last other change, by shape, in order of first appearance.
  let inserts = new Map<string, RowChange[]>();

  const flush = () => {
    if (group.length) statements.push(compileGroup(group, tables));
    group = [];
    shape = '';
    targets = new Set();
  };
  const flushInserts = () => {
    const groups = [...inserts.values()];
    const rank = (g: RowChange[]) => tables.get(g[0]!.table)?.rank ?? 0;
    groups.sort((a, b) => rank(a) - rank(b)); // stable: same rank keeps first-appearance order
    for (const g of groups) statements.push(compileGroup(g, tables));
    inserts = new Map();
  };

  for (const change of changes) {
    const next = shapeOf(change);
    if (change.op === 'insert') {
      flush();
      inserts.set(next, [...(inserts.get(next) ?? []), change]);
      continue;
    }
    if (inserts.size) flushInserts();
    const target = targetOf(change);
    if (next !== shape || next === 'sql' || (target !== undefined && targets.has(target))) {
      flush();
      shape = next;
    }
    group.push(change);
    if (target !== undefined) targets.add(target);
  }
  flush();
  flushInserts();
  return statements;
}

function columnOf(tables: Map<string, TableInfo>, table: string, column: string) {
  const info = tables.get(table);
  if (!info) throw new Error(`projection writes table "${table}", which it does not declare`);
  const col = info.columns.get(column);
  if (!col) throw new Error(`table "${table}" has no column "${column}"`);
  return col;
}

/**
 * One array parameter per column, cast to the column's type: `unnest($1::integer[], $2::json[])`.
 * `tuples` hold the values in the order of `columns`.
 */
function unnestOf(tables: Map<string, TableInfo>, table: string, columns: string[], tuples: unknown[][]) {
  const casts: string[] = [];
  const values = columns.map((column, i) => {
    const { type, json } = columnOf(tables, table, column);
    casts.push(`$${i + 1}::${type}[]`);
    return tuples.map((tuple) => {
      const value = tuple[i];
      if (value === undefined || value === null) return null;
      return json ? JSON.stringify(value) : value;
    });
  });
  return { values, unnest: `unnest(${casts.join(', ')})` };
}

function compileGroup(group: RowChange[], tables: Map<string, TableInfo>): Statement {
  const first = group[0]!;
  const table = quote(first.table);
  switch (first.op) {
    case 'sql':
      return { text: first.text, values: first.values };
    case 'insert':
    case 'upsert': {
      const columns = Object.keys(first.row);
      const tuples = group.map((change) => columns.map((c) => (change as { row: Row }).row[c]));
      const { values, unnest } = unnestOf(tables, first.table, columns, tuples);
      let text = `INSERT INTO ${table} (${columns.map(quote).join(', ')}) SELECT * FROM ${unnest}`;
      if (first.op === 'upsert') {
        const update = first.update ?? columns.filter((column) => !first.key.includes(column));
        text += ` ON CONFLICT (${first.key.map(quote).join(', ')}) DO ${
          update.length ? `UPDATE SET ${update.map((c) => `${quote(c)} = EXCLUDED.${quote(c)}`).join(', ')}` : 'NOTHING'
        }`;
      }
      return { text, values };
    }
    case 'update': {
      const whereColumns = Object.keys(first.where);
      const setColumns = Object.keys(first.set);
      const tuples = group.map((change) => {
        const { where, set } = change as { where: Row; set: Row };
        return [...whereColumns.map((c) => where[c]), ...setColumns.map((c) => set[c])];
      });
      const { values, unnest } = unnestOf(tables, first.table, [...whereColumns, ...setColumns], tuples);
      const aliases = [...whereColumns.map((_, i) => `w${i}`), ...setColumns.map((_, i) => `s${i}`)];
      return {
        text: `UPDATE ${table} AS t SET ${setColumns.map((c, i) => `${quote(c)} = v.s${i}`).join(', ')} FROM ${unnest} AS v(${aliases.join(', ')}) WHERE ${whereColumns.map((c, i) => `t.${quote(c)} = v.w${i}`).join(' AND ')}`,
        values,
      };
    }
    case 'delete': {
      const whereColumns = Object.keys(first.where);
      const tuples = group.map((change) => whereColumns.map((c) => (change as { where: Row }).where[c]));
      const { values, unnest } = unnestOf(tables, first.table, whereColumns, tuples);
      return {
        text: `DELETE FROM ${table} AS t USING ${unnest} AS v(${whereColumns.map((_, i) => `w${i}`).join(', ')}) WHERE ${whereColumns.map((c, i) => `t.${quote(c)} = v.w${i}`).join(' AND ')}`,
        values,
      };
    }
  }
}
