import knexFactory from 'knex';
import { prepareDatabase } from './ensure-database.js';
import { knexConfig } from './knex-config.js';

/** `knex migrate:latest` as a function: used by `serve --migrate` and by the tests' template database. */
export async function migrateLatest(databaseUrl: string): Promise<string[]> {
  await prepareDatabase(databaseUrl);
  const knex = knexFactory(knexConfig(databaseUrl));
  try {
    const [, applied] = (await knex.migrate.latest()) as [number, string[]];
    return applied;
  } finally {
    await knex.destroy();
  }
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

/** The migrations of this release not applied to the database yet. */
export async function pendingMigrations(databaseUrl: string): Promise<string[]> {
  // Knex's own warnings (a connection error with its stack) would come before the command's one line.
  const quiet = () => undefined;
  const knex = knexFactory({ ...knexConfig(databaseUrl), log: { warn: quiet, error: quiet, deprecate: quiet, debug: quiet } });
  try {
    const [, pending] = (await knex.migrate.list()) as [unknown[], Array<string | { file: string }>];
    return pending.map((migration) => (typeof migration === 'string' ? migration : migration.file));
  } finally {
    await knex.destroy();
  }
}

/**
 * The migrations of this release the database lacks; throws, saying to migrate, for a database
 * never migrated (it has no log to read).
 */
export async function missingMigrations(databaseUrl: string): Promise<string[]> {
  try {
    return await pendingMigrations(databaseUrl);
  } catch (error) {
    // No knex schema: never migrated (anything else, e.g. the server down, says so itself).
    if ((error as { code?: string }).code !== '3F000' && (error as { code?: string }).code !== '42P01') throw error;
    throw new Error('the database has not been migrated: run npx knex migrate:latest (or serve --migrate)');
  }
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
