import { parse, parseIntoClientConfig } from 'pg-connection-string';
import { MIGRATIONS_SCHEMA } from './knex-config.js';
import { quoteIdent } from '../log/postgres/sql.js';
import { withClient } from './with-client.js';

/**
 * Creates the database named in `url` when it does not exist yet (the contract's default
 * database is "created if missing"). Connects to the database itself first: a role may be allowed
 * into its own database and not into `postgres` (pg_hba.conf, REVOKE CONNECT). Only when it does
 * not exist (3D000) does it connect to the server's `postgres` database to create it.
 */
export async function ensureDatabase(url: string): Promise<void> {
  // Parsed as node-postgres parses it: a Unix socket's URL (postgres:///db?host=/run/postgresql) too.
  const name = parse(url).database;
  // The URL is not repeated: it may hold a password.
  if (!name) throw new Error('DATABASE_URL has no database name (postgres://host:port/<database>)');
  try {
    await withClient(url, async () => undefined);
    return;
  } catch (error) {
    if ((error as { code?: string }).code !== '3D000') throw error; // invalid_catalog_name: no such database
  }
  await withClient({ ...parseIntoClientConfig(url), database: 'postgres' }, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount) return;
    try {
      await client.query(`CREATE DATABASE ${quoteIdent(name)}`);
    } catch (error) {
      // Another process created it between our check and our CREATE: that is fine (42P04, or a
      // unique violation of the catalog when both CREATEs ran at once).
      const code = (error as { code?: string }).code;
      if (code !== '42P04' && code !== '23505') throw error;
    }
  });
}

/** Everything `knex migrate:latest` needs before it starts: the database and Knex's own schema. */
export async function prepareDatabase(url: string): Promise<void> {
  await ensureDatabase(url);
  await withClient(url, async (client) => {
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${MIGRATIONS_SCHEMA}`);
    } catch (error) {
      // Two processes racing on CREATE SCHEMA IF NOT EXISTS can still collide on the catalog.
      if ((error as { code?: string }).code !== '23505') throw error;
    }
  });
}
