import { EVENTSTOREDB_UNAVAILABLE, type Config } from '../config.js';
import { createPostgresEventLog } from './postgres/index.js';
import type { EventLog } from './types.js';

export * from './errors.js';
export type * from './types.js';
export { createPostgresEventLog } from './postgres/index.js';

/** The configured backend (EVENT_LOG). */
export function openEventLog(config: Config, onError?: (error: unknown) => void): EventLog {
  if (config.eventLog === 'eventstoredb') {
    throw new Error(EVENTSTOREDB_UNAVAILABLE);
  }
  return createPostgresEventLog({ connectionString: config.databaseUrl, onError });
}
