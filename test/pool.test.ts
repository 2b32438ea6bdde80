/** The store's connection pools (src/db/pool.ts). */
import { execFileSync } from 'node:child_process';
import test from 'ava';
import type pg from 'pg';
import { createPool } from '../src/db/pool.js';
import { serverUrl } from './helpers/database.js';

/** The kernel's timer on this process's end of a client's socket, as `ss -o` shows it (e.g. `timer:(keepalive,9.9sec,0)`), or ''. */
function socketTimer(client: pg.PoolClient): string {
  const { localPort } = (client as unknown as { connection: { stream: { localPort: number } } }).connection.stream;
  const line = execFileSync('ss', ['-tnoH', 'state', 'established', `( sport = :${localPort} )`], { encoding: 'utf8' });
  return /timer:\([^)]*\)/.exec(line)?.[0] ?? '';
}

// A statement waiting for a server whose host died, or behind a network that drops packets, never
// ended without them: the ingester's batch waited for ever, its messages held on NATS.
test('regression: the pools\' connections send TCP keepalives, which end a wait on a dead server', async (t) => {
  const pool = createPool({ connectionString: serverUrl, max: 1, onError: () => undefined });
  t.teardown(() => pool.end());
  const client = await pool.connect();
  try {
    t.regex(socketTimer(client), /^timer:\(keepalive,/);
  } finally {
    client.release();
  }
});

test('a pool asked for no keepalives gets none', async (t) => {
  const pool = createPool({ connectionString: serverUrl, max: 1, keepAlive: false, onError: () => undefined });
  t.teardown(() => pool.end());
  const client = await pool.connect();
  try {
    t.notRegex(socketTimer(client), /keepalive/);
  } finally {
    client.release();
  }
});

// Regression (found in review): the server kept the session of a client whose host died in the
// middle of a transaction for the kernel's two hours, idle in transaction with its locks (a
// projection group's checkpoint rows, behind which the process that took the group over waited).
test('regression: the pools\' connections ask the server for keepalives of its own, beside the options a caller gives', async (t) => {
  const pool = createPool({ connectionString: serverUrl, max: 1, options: '-c application_name=pool-test', onError: () => undefined });
  t.teardown(() => pool.end());
  const { rows } = await pool.query<{ idle: string; interval: string; count: string; name: string }>(
    "SELECT current_setting('tcp_keepalives_idle') AS idle, current_setting('tcp_keepalives_interval') AS interval, current_setting('tcp_keepalives_count') AS count, current_setting('application_name') AS name",
  );
  t.deepEqual(rows[0], { idle: '30', interval: '10', count: '3', name: 'pool-test' });
});
