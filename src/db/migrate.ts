import fs from 'node:fs';
import knexFactory from 'knex';
import { prepareDatabase } from './ensure-database.js';
import { knexConfig, MIGRATIONS_SCHEMA } from './knex-config.js';
import { withClient } from './with-client.js';

/** The session lock migrateLatest holds while it migrates (the log's locks are 7401 to 7408). */
const MIGRATION_LOCK = [7409, 0] as const;

/**
 * `knex migrate:latest` as a function: used by `serve --migrate` and by the tests' template
 * database. One process at a time: several `serve --migrate` started at once on a new database
 * raced in Knex's own setup, each creating its lock table's row, and every migration after that
 * found it "already locked" until someone ran `knex migrate:unlock`. Under an advisory lock held
 * by a connection of its own, the second finds the work done.
 */
export async function migrateLatest(databaseUrl: string): Promise<string[]> {
  await prepareDatabase(databaseUrl);
  // The session's end releases its lock.
  return withClient(databaseUrl, async (lock) => {
    await lock.query('SELECT pg_advisory_lock($1, $2)', [...MIGRATION_LOCK]);
    const knex = knexFactory(knexConfig(databaseUrl));
    try {
      const [, applied] = (await knex.migrate.latest()) as [number, string[]];
      return applied;
    } finally {
      await knex.destroy();
    }
  });
}

/** `knex migrate:rollback --all` as a function. */
export async function rollbackAll(databaseUrl: string): Promise<string[]> {
  const knex = knexFactory(knexConfig(databaseUrl));
  try {
    const [, reverted] = (await knex.migrate.rollback(undefined, true)) as [number, string[]];
    return reverted;
  } finally {
    await knex.destroy();
  }
}

/** This release's migrations, by file name (as Knex records them), in order. */
function releaseMigrations(): string[] {
  const { directory, loadExtensions = ['.ts'] } = knexConfig('').migrations as { directory: string; loadExtensions?: string[] };
  return fs.readdirSync(directory).filter((file) => loadExtensions.some((extension) => file.endsWith(extension))).sort();
}

/**
 * The migrations of this release the database lacks, read with one SELECT of Knex's record (not
 * through Knex, which refuses a database migrated by a newer release, and may create its tables:
 * a write, from commands that only read); throws, saying to migrate, for a database never
 * migrated (it has no log to read).
 */
export async function missingMigrations(databaseUrl: string): Promise<string[]> {
  const applied = await withClient(databaseUrl, async (client) => {
    try {
      const { rows } = await client.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_SCHEMA}.knex_migrations`);
      return new Set(rows.map((row) => row.name));
    } catch (error) {
      // No Knex record (schema or table): never migrated. Anything else (permissions) says so itself.
      if ((error as { code?: string }).code !== '3F000' && (error as { code?: string }).code !== '42P01') throw error;
      throw new Error('the database has not been migrated: run npx knex migrate:latest (or serve --migrate)');
    }
  });
  return releaseMigrations().filter((name) => !applied.has(name));
}

/**
 * Refuses a database behind this release's migrations: its functions and tables are an older
 * release's, and what this release sends them (a key precondition with a holder, say) would be
 * refused or fail, and an ingested event rejected for good. Commands that write run this first
 * (those that only read run missingMigrations, which refuses a database never migrated).
 */
export async function requireMigrated(databaseUrl: string): Promise<void> {
  const pending = await missingMigrations(databaseUrl);
  if (pending.length > 0) {
    throw new Error(`the database lacks ${pending.length} migration${pending.length > 1 ? 's' : ''} of this release (${pending.join(', ')}): run npx knex migrate:latest (or serve --migrate)`);
  }
}
