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
