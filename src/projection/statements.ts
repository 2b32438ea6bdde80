/**
 * From row changes to set-based SQL: changes of the same shape (same operation, table and columns)
 * become one statement over their rows as one JSON parameter (json_to_recordset), so a batch of
 * 1,000 package builds is one INSERT, not 1,000 round trips. Updates, upserts, deletes and
 * raw statements keep their order and merge only with neighbours. Runs of plain inserts are
 * gathered per shape and written parents first (the tables' foreign-key order), since a channel
 * sync interleaves one package with its builds: without this, every few rows would be a statement.
 * Pure: the statements are run by the runner.
 */
import type { Row, RowChange } from './definition.js';
import type { TableInfo } from './columns.js';
import { inlineParameters, quoteIdent as quote } from '../log/postgres/sql.js';

export interface Statement {
  text: string;
  values: unknown[];
  /**
   * Set on an INSERT or upsert that may run with the table's triggers off, provided the foreign
   * keys of `rows` are then checked set-based (key-checks.ts): its end state is the rows as given
   * (so checking them is checking the table), and no trigger of its own or ON UPDATE action of a
   * parent key is skipped.
   */
  checked?: { table: string; rows: Row[] };
  /**
   * The statement as SQL text with its parameters (the rows as JSON, and for an UPDATE or DELETE
   * the keys as an array) as literals, for a simple query; raw statements (`sql` changes) have
   * none. Its presence also says that every parameter is a value of ours, which a prepared
   * statement takes in text form (textParameter): the runner sends such statements in one round
   * trip, with the end of a batch (checkpoint.ts), or with the steps around a large batch's
   * statements (runner.ts, runSteps).
   */
  inline?: () => string;
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
      const same = inserts.get(next);
      if (same) same.push(change);
      else inserts.set(next, [change]);
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

/** A compiled statement: text (no comments, no string literals), and its parameters: the rows as JSON, maybe the keys. */
function withInline(statement: Statement): Statement {
  return { ...statement, inline: () => inlineParameters(statement.text, statement.values) };
}

function columnOf(tables: Map<string, TableInfo>, table: string, column: string) {
  const info = tables.get(table);
  if (!info) throw new Error(`projection writes table "${table}", which it does not declare`);
  const col = info.columns.get(column);
  if (!col) throw new Error(`table "${table}" has no column "${column}"`);
  return col;
}

/**
 * The rows of a set-based statement, as one JSON parameter typed field by field by
 * json_to_recordset: `json_to_recordset($1::json) AS v("id" integer, "depends" json)`. One
 * JSON.stringify (native code) replaces node-postgres escaping every element of one array
 * parameter per column in JavaScript, which was the largest cost of a rebuild after parsing the
 * log. `fields`: [name in the JSON objects, column whose type it takes].
 */
export function recordset(tables: Map<string, TableInfo>, table: string, alias: string, fields: [string, string][]): string {
  const definition = fields.map(([name, column]) => `${quote(name)} ${columnOf(tables, table, column).type}`);
  return `json_to_recordset($1::json) AS ${alias}(${definition.join(', ')})`;
}

/**
 * For an UPDATE or DELETE joined with its rows: `AND t."id" = ANY($2::integer[])` over the
 * distinct values of the first key column, when they can be inlined (strings, safe integers).
 * The row source is a function whose size the planner cannot know (it guesses 100 rows); with
 * statistics taken while the table was small it then read the whole table and hashed it, for a
 * batch of two rows (5 ms against 50,000 builds, growing with the table). An array of known
 * length lets it probe the index. The join condition says the same thing: the rows changed are
 * the same.
 */
function keyNarrowing(tables: Map<string, TableInfo>, table: string, column: string, values: unknown[]): { condition: string; values: unknown[] } {
  const distinct = [...new Set(values)];
  if (!distinct.every((value) => typeof value === 'string' || (typeof value === 'number' && Number.isSafeInteger(value)))) return { condition: '', values: [] };
  return { condition: ` AND t.${quote(column)} = ANY($2::${columnOf(tables, table, column).type}[])`, values: [distinct] };
}

/**
 * The WHERE of an UPDATE or DELETE of `t` joined with its rows `v` (key columns as `w0`, `w1`...):
 * every key column matched, narrowed to the first one's values (keyNarrowing); and the parameters
 * after the rows.
 */
function matchingKeys(tables: Map<string, TableInfo>, table: string, whereColumns: string[], rows: Row[]): { where: string; values: unknown[] } {
  const narrowing = keyNarrowing(tables, table, whereColumns[0]!, rows.map((row) => row.w0));
  return { where: whereColumns.map((c, i) => `t.${quote(c)} = v.w${i}`).join(' AND ') + narrowing.condition, values: narrowing.values };
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
      const source = recordset(tables, first.table, 'v', columns.map((c) => [c, c]));
      let text = `INSERT INTO ${table} (${columns.map(quote).join(', ')}) SELECT ${columns.map((c) => `v.${quote(c)}`).join(', ')} FROM ${source}`;
      const update = first.op === 'upsert' ? { key: first.key, columns: first.update ?? columns.filter((column) => !first.key.includes(column)) } : undefined;
      if (update) {
        text += ` ON CONFLICT (${update.key.map(quote).join(', ')}) DO ${
          update.columns.length ? `UPDATE SET ${update.columns.map((c) => `${quote(c)} = EXCLUDED.${quote(c)}`).join(', ')}` : 'NOTHING'
        }`;
      }
      const rows = group.map((change) => (change as { row: Row }).row);
      const checked = triggersMayBeSkipped(tables.get(first.table)!, columns, update) ? { checked: { table: first.table, rows } } : {};
      return withInline({ text, values: [JSON.stringify(rows)], ...checked });
    }
    case 'update': {
      const whereColumns = Object.keys(first.where);
      const setColumns = Object.keys(first.set);
      const fields: [string, string][] = [...whereColumns.map((c, i): [string, string] => [`w${i}`, c]), ...setColumns.map((c, i): [string, string] => [`s${i}`, c])];
      const rows = group.map((change) => {
        const { where, set } = change as { where: Row; set: Row };
        return Object.fromEntries([...whereColumns.map((c, i) => [`w${i}`, where[c]]), ...setColumns.map((c, i) => [`s${i}`, set[c]])]);
      });
      const keys = matchingKeys(tables, first.table, whereColumns, rows);
      return withInline({
        text: `UPDATE ${table} AS t SET ${setColumns.map((c, i) => `${quote(c)} = v.s${i}`).join(', ')} FROM ${recordset(tables, first.table, 'v', fields)} WHERE ${keys.where}`,
        values: [JSON.stringify(rows), ...keys.values],
      });
    }
    case 'delete': {
      const whereColumns = Object.keys(first.where);
      const rows = group.map((change) => Object.fromEntries(whereColumns.map((c, i) => [`w${i}`, (change as { where: Row }).where[c]])));
      const keys = matchingKeys(tables, first.table, whereColumns, rows);
      return withInline({
        text: `DELETE FROM ${table} AS t USING ${recordset(tables, first.table, 'v', whereColumns.map((c, i) => [`w${i}`, c]))} WHERE ${keys.where}`,
        values: [JSON.stringify(rows), ...keys.values],
      });
    }
  }
}

/**
 * Whether an INSERT (or upsert: `update` = its conflict key and the columns it updates) of rows
 * with these columns does nothing beyond writing those rows when the table's triggers are off:
 * - no trigger or rule of the table's own would be skipped;
 * - every foreign key is MATCH SIMPLE and all its columns are written, so the rows say what the
 *   key will hold (a column left to its default would not);
 * - an upsert that hits a conflict leaves every key column as written (it updates them, or they
 *   are the conflict key), and updates no column another table references (whose ON UPDATE
 *   action the parent's trigger would apply).
 */
function triggersMayBeSkipped(info: TableInfo, columns: string[], update: { key: string[]; columns: string[] } | undefined): boolean {
  if (info.ownTriggers) return false;
  const written = new Set(columns);
  if (!info.foreignKeys.every((key) => key.matchSimple && key.columns.every((column) => written.has(column)))) return false;
  if (!update) return true;
  const kept = new Set([...update.key, ...update.columns]);
  return info.foreignKeys.every((key) => key.columns.every((column) => kept.has(column))) && !update.columns.some((column) => info.referenced.has(column));
}
