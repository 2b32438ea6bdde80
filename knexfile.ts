import type { Knex } from 'knex';
import { loadConfig } from './src/config.js';
import { prepareDatabase } from './src/db/ensure-database.js';
import { knexConfig } from './src/db/knex-config.js';

// `npx knex migrate:latest` on a fresh machine must work: create the database first.
const { databaseUrl } = loadConfig();
await prepareDatabase(databaseUrl);

const config: Knex.Config = knexConfig(databaseUrl);
export default config;
