/** Configuration from the environment, with the contract's defaults (contract.md, "Configuration"). */
export interface Config {
  databaseUrl: string;
  eventLog: 'postgres' | 'eventstoredb';
  eventStoreDbUrl: string | undefined;
  natsUrl: string;
  logLevel: string;
}

import os from 'node:os';

export const DEFAULT_DATABASE_URL = 'postgres://127.0.0.1:5432/conda_store_events';

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const eventLog = env.EVENT_LOG || 'postgres'; // empty is unset, as for the other variables
  if (eventLog !== 'postgres' && eventLog !== 'eventstoredb') {
    throw new Error(`EVENT_LOG must be "postgres" or "eventstoredb", got "${eventLog}"`);
  }
  if (eventLog === 'eventstoredb' && !env.EVENTSTOREDB_URL) {
    throw new Error('EVENTSTOREDB_URL is required when EVENT_LOG=eventstoredb');
  }
  return {
    databaseUrl: withDefaultUser(env.DATABASE_URL || DEFAULT_DATABASE_URL),
    eventLog,
    eventStoreDbUrl: env.EVENTSTOREDB_URL,
    natsUrl: env.NATS_URL || 'nats://127.0.0.1:4222',
    logLevel: env.LOG_LEVEL || 'info',
  };
}

/**
 * A URL without a user name means "the operating-system user", as for libpq and psql. node-postgres
 * reads $USER instead, which is unset under cron, systemd and CI, so name the user explicitly.
 */
export function withDefaultUser(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  if (!url.username) url.username = os.userInfo().username;
  return url.toString();
}
