/** One-off connections (src/db/with-client.ts): closed whatever happens, and never fatal to the process. */
import test from 'ava';
import type pg from 'pg';
import { withClient } from '../src/db/with-client.js';
import { serverUrl } from './helpers/database.js';

/** Whether the server still has a session of that backend pid. */
const backendAlive = (pid: number) => withClient(serverUrl, async (admin) => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 1);

test('the work\'s result comes back and its connection is closed', async (t) => {
  let pid = 0;
  const result = await withClient(serverUrl, async (client) => {
    pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    return 'done';
  });
  t.is(result, 'done');
  t.false(await backendAlive(pid));
});

test('an error of the work comes back as it was, and its connection is closed', async (t) => {
  let pid = 0;
  const error = await t.throwsAsync(
    withClient(serverUrl, async (client) => {
      pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      await client.query('SELECT 1/0');
    }),
  );
  t.is((error as { code?: string }).code, '22012');
  t.false(await backendAlive(pid));
});

// Without an error listener, pg.Client emits the termination of an idle connection as an 'error'
// event that nothing handles, and the process ends: serve's check of the server settings at start,
// migrateLatest's lock connection during a long migration.
test('regression: a connection terminated between two queries fails the next query, not the process', async (t) => {
  let saw: pg.Client | undefined;
  const error = await t.throwsAsync(
    withClient(serverUrl, async (client) => {
      saw = client;
      const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
      const ended = new Promise((resolve) => client.once('end', resolve));
      await withClient(serverUrl, (admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
      await ended; // the termination has reached the client, while no query of its was running
      await client.query('SELECT 1');
    }),
  );
  t.truthy(saw);
  t.regex(error!.message, /terminat|not queryable|closed|Connection/i);
});

test('a connection that cannot be made fails with the server\'s reason', async (t) => {
  const url = new URL(serverUrl);
  url.pathname = '/cse_no_such_database_here';
  const error = await t.throwsAsync(withClient(url.toString(), async () => 'never'));
  t.is((error as { code?: string }).code, '3D000');
});
