import fs from 'node:fs';

/** Reads an SQL file that sits beside the module that runs it (one operation, one file). */
export function sqlFile(moduleUrl: string, name: string): string {
  return fs.readFileSync(new URL(name, moduleUrl), 'utf8');
}

/** bigint columns arrive as strings from node-postgres; positions stay far below 2^53. */
export function toNumber(value: string | number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new Error(`integer out of range: ${value}`);
  return n;
}

/** An SQL identifier, double-quoted (embedded quotes doubled): for names that cannot be parameters. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * An SQL literal for a value of ours (a string, a safe integer, or an array of them), quoted as
 * PostgreSQL's quote_literal does: for statements sent as one simple query, which takes no
 * parameters. Anything else is refused rather than guessed.
 */
export function sqlLiteral(value: unknown): string {
  if (Array.isArray(value)) return `ARRAY[${value.map(sqlLiteral).join(', ')}]`;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (typeof value === 'string') {
    const quoted = `'${value.replaceAll("'", "''")}'`;
    // E'' so that a backslash means itself whatever standard_conforming_strings says.
    return value.includes('\\') ? `E${quoted.replaceAll('\\', '\\\\')}` : quoted;
  }
  throw new Error(`cannot inline ${typeof value} ${String(value)} as an SQL literal`);
}

const ESCAPED_IN_ELEMENTS = /["\\]/g;
/** In JSON text: a backslash that does not escape `"` or `\` (a control character, a lone surrogate; or a false alarm). */
const OTHER_JSON_ESCAPE = /\\[^"\\]/;

/**
 * A one-dimensional array parameter in PostgreSQL's text form, for a statement that casts it
 * (`$1::text[]`, `$2::int[]`). Elements: strings, safe integers, nulls. node-postgres' own
 * conversion runs a type dispatch and two regular-expression replacements per element; for the
 * twenty arrays of a 500-event append that was a sixth of the ingester's Node.js time. Text
 * parameters only also let a statement go without a Describe (src/db/lean-query.ts).
 */
export function arrayParameter(values: readonly (string | number | null)[]): string {
  for (const value of values) {
    // Anything else (an object, a nested array, a bigint) has no JSON that is its array element.
    if (value !== null && typeof value !== 'string' && !Number.isSafeInteger(value)) {
      throw new Error(`cannot send ${typeof value === 'number' ? String(value) : typeof value} in an array parameter: only strings, safe integers and nulls`);
    }
  }
  // The JSON of such an array is its array literal but for the brackets: both quote strings and
  // escape `"` and `\` alike with a backslash, and PostgreSQL reads an unquoted null as NULL in any
  // case. V8 writes it in one pass, as one flat string. Not so where JSON escapes anything else
  // (\n, \u0000: in an array literal a backslash takes the next character as it is): a control
  // character, or a lone surrogate, which then goes as U+FFFD, as in any text parameter.
  const json = JSON.stringify(values);
  if (!OTHER_JSON_ESCAPE.test(json)) return `{${json.slice(1, -1)}}`;
  let text = '{';
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (i > 0) text += ',';
    if (value === null) text += 'NULL';
    else if (typeof value === 'string') text += `"${value.replace(ESCAPED_IN_ELEMENTS, '\\$&')}"`;
    else text += String(value);
  }
  return `${text}}`;
}

/**
 * A parameter in text form, for a statement sent with text parameters only (src/db/lean-query.ts):
 * a string as it is, a safe integer in decimal, an array by arrayParameter, null as null.
 */
export function textParameter(value: unknown): string | null {
  if (value === null) return null;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  if (Array.isArray(value)) return arrayParameter(value as (string | number | null)[]);
  throw new Error(`cannot send ${typeof value} ${String(value)} as a text parameter`);
}

/** SQL without its `--` comments (for SQL files whose parameters are inlined: see inlineParameters). */
export function withoutComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').trim();
}

/**
 * SQL with its parameters `$1..$n` replaced by literals of `values`: to send several statements in
 * one round trip. Drop the comments of an SQL file first (withoutComments), lest a value end one.
 */
export function inlineParameters(sql: string, values: unknown[]): string {
  return sql.replace(/\$(\d+)/g, (_, n: string) => {
    if (Number(n) > values.length) throw new Error(`no value for parameter $${n}`);
    return sqlLiteral(values[Number(n) - 1]);
  });
}
