import type { Config } from '../config.js';
import { createPostgresEventLog } from './postgres/index.js';
import type { EventLog } from './types.js';

export * from './errors.js';
export type * from './types.js';
export { createPostgresEventLog } from './postgres/index.js';

/** The configured backend (EVENT_LOG). */
export function openEventLog(config: Config, onError?: (error: unknown) => void): EventLog {
  if (config.eventLog === 'eventstoredb') {
    throw new Error('EVENT_LOG=eventstoredb: the EventStoreDB backend is not available in this version; use EVENT_LOG=postgres');
  }
  return createPostgresEventLog({ connectionString: config.databaseUrl, onError });
}
