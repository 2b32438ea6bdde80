import type { Knex } from 'knex';
import { databaseUrlOf } from './src/config.js';
import { prepareDatabase } from './src/db/ensure-database.js';
import { knexConfig } from './src/db/knex-config.js';

// DATABASE_URL alone: the other variables are the commands' (a LOG_LEVEL they would refuse must
// not stop a migration).
const databaseUrl = databaseUrlOf();
// `npx knex migrate:latest` on a fresh machine must work: the commands that migrate up create the
// database first. Not the others: migrate:make needs no server, and migrate:status or rollback
// against a misspelt DATABASE_URL must not create an empty database of that name.
if (process.argv.some((arg) => arg === 'migrate:latest' || arg === 'migrate:up')) await prepareDatabase(databaseUrl);

const config: Knex.Config = knexConfig(databaseUrl);
export default config;
