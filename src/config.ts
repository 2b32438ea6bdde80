/** Configuration from the environment, with the contract's defaults (contract.md, "Configuration"). */
export interface Config {
  databaseUrl: string;
  eventLog: 'postgres' | 'eventstoredb';
  eventStoreDbUrl: string | undefined;
  natsUrl: string;
  logLevel: string;
}

import os from 'node:os';
import { parse } from 'pg-connection-string';
import pino from 'pino';

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
    logLevel: logLevel(env.LOG_LEVEL),
  };
}

/**
 * A URL without a user name means "the operating-system user", as for libpq and psql. node-postgres
 * reads $USER instead, which is unset under cron, systemd and CI, so name the user explicitly: in
 * the URL's authority when it has a host, else as a `user` parameter (a Unix socket's URL,
 * `postgres:///db?host=/run/postgresql`, can carry no user in its authority). Parsed as
 * node-postgres parses it (pg-connection-string), so every form it takes is taken here.
 */
export function withDefaultUser(databaseUrl: string): string {
  if (parse(databaseUrl).user) return databaseUrl;
  const user = os.userInfo().username;
  const url = URL.canParse(databaseUrl) ? new URL(databaseUrl) : undefined;
  if (url?.hostname) {
    url.username = user;
    return url.toString();
  }
  return `${databaseUrl}${databaseUrl.includes('?') ? '&' : '?'}user=${encodeURIComponent(user)}`;
}

/** LOG_LEVEL: one of pino's levels, named as the error says (pino's own error names no variable). */
function logLevel(value: string | undefined): string {
  const level = value || 'info';
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new Error(`LOG_LEVEL must be one of ${[...Object.keys(pino.levels.values), 'silent'].join(', ')}, got "${level}"`);
  }
  return level;
}
