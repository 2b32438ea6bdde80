import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Knex } from 'knex';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Where Knex keeps its own bookkeeping: out of `public`, which holds exactly conda-store's tables. */
export const MIGRATIONS_SCHEMA = 'knex';

/** The one Knex configuration, used by knexfile.ts, the CLI (`serve --migrate`) and the tests. */
export function knexConfig(databaseUrl: string): Knex.Config {
  return {
    client: 'pg',
    connection: databaseUrl,
    pool: { min: 0, max: 10 },
    migrations: {
      directory: path.join(root, 'migrations'),
      loadExtensions: ['.ts'],
      extension: 'ts',
      schemaName: MIGRATIONS_SCHEMA,
      tableName: 'knex_migrations',
    },
  };
}
