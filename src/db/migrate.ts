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
