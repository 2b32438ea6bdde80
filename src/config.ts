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
  // Refused here, before a command starts, rather than by its first use of the log (once the
  // backend exists: EVENTSTOREDB_URL required with it).
  if (eventLog === 'eventstoredb') throw new Error(EVENTSTOREDB_UNAVAILABLE);
  return {
    databaseUrl: databaseUrlOf(env),
    eventLog,
    eventStoreDbUrl: env.EVENTSTOREDB_URL,
    natsUrl: env.NATS_URL || 'nats://127.0.0.1:4222',
    logLevel: logLevel(env.LOG_LEVEL),
  };
}

/** DATABASE_URL (or the default), checked, with the user it connects as (withDefaultUser). */
export function databaseUrlOf(env: NodeJS.ProcessEnv = process.env): string {
  return withDefaultUser(checkedDatabaseUrl(env.DATABASE_URL || DEFAULT_DATABASE_URL), env);
}

export const EVENTSTOREDB_UNAVAILABLE = 'EVENT_LOG=eventstoredb: the EventStoreDB backend is not available in this version; use EVENT_LOG=postgres';

/**
 * DATABASE_URL as node-postgres takes it (postgres://, postgresql://, socket:, or a socket
 * directory), or an error naming the variable. node-postgres reads anything else as a database
 * name on a host called `base` (`127.0.0.1:5432/db`: getaddrinfo ENOTFOUND base), and a port that
 * is not a number as a bare "Invalid URL".
 */
function checkedDatabaseUrl(value: string): string {
  // The value is not shown: a URL that does not parse is one whose parts cannot be told apart,
  // its password included (a '/' or '@' in it, not percent-encoded, is the commonest cause).
  const refuse = (why: string) => new Error(`DATABASE_URL must be a PostgreSQL URL such as postgres://user@host:5432/database (${why}; characters such as / @ : in a password must be percent-encoded)`);
  if (!/^(postgres|postgresql|socket):/i.test(value) && !value.startsWith('/')) throw refuse('no postgres:// scheme');
  try {
    parse(value);
  } catch (error) {
    throw refuse(error instanceof Error ? error.message : String(error));
  }
  return value;
}

/**
 * A URL without a user name means the user libpq and psql would take: PGUSER, else the
 * operating-system user. node-postgres reads PGUSER, then $USER, which is unset under cron,
 * systemd and CI, so without PGUSER name the user explicitly: in the URL's authority when it has a
 * host, else as a `user` parameter (a Unix socket's URL, `postgres:///db?host=/run/postgresql`,
 * can carry no user in its authority). Parsed as node-postgres parses it (pg-connection-string), so
 * every form it takes is taken here. A process whose user id has no name (a container run with an
 * arbitrary uid) leaves the URL as it is: node-postgres then says which user it lacks.
 */
export function withDefaultUser(databaseUrl: string, env: NodeJS.ProcessEnv = process.env): string {
  if (parse(databaseUrl).user || env.PGUSER) return databaseUrl;
  const user = operatingSystemUser() ?? env.USER;
  if (!user) return databaseUrl;
  const url = URL.canParse(databaseUrl) ? new URL(databaseUrl) : undefined;
  if (url?.hostname) {
    url.username = user;
    return url.toString();
  }
  return `${databaseUrl}${databaseUrl.includes('?') ? '&' : '?'}user=${encodeURIComponent(user)}`;
}

/** The name of this process's user, if it has one (os.userInfo() throws for a uid without a passwd entry). */
function operatingSystemUser(): string | undefined {
  try {
    return os.userInfo().username;
  } catch {
    return undefined;
  }
}

/** LOG_LEVEL: one of pino's levels, named as the error says (pino's own error names no variable). */
function logLevel(value: string | undefined): string {
  const level = value || 'info';
  if (!Object.hasOwn(pino.levels.values, level) && level !== 'silent') {
    throw new Error(`LOG_LEVEL must be one of ${[...Object.keys(pino.levels.values), 'silent'].join(', ')}, got "${level}"`);
  }
  return level;
}
