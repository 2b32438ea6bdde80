import { sqlFile } from '../log/postgres/sql.js';
import { withClient } from './with-client.js';

const SERVER_SETTINGS_SQL = sqlFile(import.meta.url, 'server-settings.sql');

export interface ServerSettings {
  autovacuum: string;
  track_counts: string;
}

/**
 * What is wrong with `settings` for a long-running store, one message each. Autovacuum off (or
 * track_counts off, which keeps it from running) means no statistics are ever taken: plans made
 * while a table was small stay for as long as a process keeps its connections, and the
 * projections' queries get worse as the tables grow. Pure.
 */
export function settingsWarnings(settings: ServerSettings): string[] {
  const warnings: string[] = [];
  if (settings.autovacuum !== 'on') warnings.push('autovacuum is off on this PostgreSQL server: no table statistics are taken, and plans made while the tables were small stay (README, "Configuration")');
  else if (settings.track_counts !== 'on') warnings.push('track_counts is off (for this server, or this database or role), which keeps autovacuum from running: no table statistics are taken (README, "Configuration")');
  return warnings;
}

/** The server's settings that settingsWarnings looks at. */
export async function serverSettings(databaseUrl: string): Promise<ServerSettings> {
  return withClient(databaseUrl, async (client) => (await client.query<ServerSettings>(SERVER_SETTINGS_SQL)).rows[0]!);
}
