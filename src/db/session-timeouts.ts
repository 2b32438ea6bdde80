import type pg from 'pg';
import { sqlFile } from '../log/postgres/sql.js';

const SESSION_TIMEOUTS_OFF_SQL = sqlFile(import.meta.url, 'session-timeouts-off.sql');

/** The server's timeouts that can end a statement, a transaction or a whole session of ours. */
export type SessionTimeout = 'statement_timeout' | 'idle_in_transaction_session_timeout' | 'idle_session_timeout';

/**
 * Turns `timeouts` off for `client`'s session, where the server has them: a user's or a role's
 * timeouts are meant for their own sessions. A connection that holds a lock while it idles (a
 * projection group's or the ingestion's ownership, the listener's) would otherwise be ended by an
 * `idle_session_timeout`, and its lock taken by another process while this one still works.
 */
export async function turnOffTimeouts(client: pg.ClientBase, timeouts: readonly SessionTimeout[]): Promise<void> {
  await client.query(SESSION_TIMEOUTS_OFF_SQL, [timeouts]);
}
