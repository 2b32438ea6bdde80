import test, { type ExecutionContext } from 'ava';
import { createKeptConnection } from '../src/db/kept-connection.js';
import { withConnection } from '../src/db/pool.js';
import { freshDatabase, testPool, withAdmin, withClient } from './helpers/database.js';
import { waitUntil } from './helpers/projection.js';

/** A pool of `max` connections on a database of its own, the kept connection in front of it, and pg-pool's checkouts counted. */
async function kept(t: ExecutionContext, { max = 3, idleMs = 60_000 } = {}) {
  const db = await freshDatabase(t, { migrated: false });
  const pool = testPool(t, db.url, max);
  const connections = createKeptConnection(pool, { idleMs });
  t.teardown(() => connections.close());
  let checkouts = 0;
  pool.on('acquire', () => checkouts++);
  const pid = () => withConnection(connections, async (client) => (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid, () => undefined);
  const alive = async (backend: number) =>
    (await withClient(db.url, (client) => client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [backend]))).rowCount === 1;
  return { db, pool, connections, pid, alive, checkouts: () => checkouts };
}

test('kept connection: statements one after the other run on one connection, checked out of the pool once', async (t) => {
  const { pool, pid, checkouts } = await kept(t);
  const first = await pid();
  for (let i = 0; i < 5; i++) t.is(await pid(), first);
  t.is(checkouts(), 1);
  t.is(pool.totalCount, 1);
  t.is(pool.idleCount, 0, 'kept out of the pool');
});

test('kept connection: a statement that comes while it is lent takes one of the pool, which goes back to the pool', async (t) => {
  const { pool, connections, pid } = await kept(t);
  const first = await pid();
  let release!: () => void;
  const holding = withConnection(connections, async (client) => {
    await new Promise<void>((resolve) => (release = resolve));
    return (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  }, () => undefined);
  const other = await pid();
  t.not(other, first);
  t.is(pool.idleCount, 1, 'the other connection went back to the pool');
  release();
  t.is(await holding, first);
  t.is(await pid(), first, 'the kept one is lent again');
});

test('kept connection: one that fails under a statement is closed; the next statement takes a new one', async (t) => {
  const { connections, pid, alive } = await kept(t);
  const first = await pid();
  // As the log's statements do: a cleanup statement after a failure, which a dead connection fails.
  await t.throwsAsync(withConnection(connections, (client) => client.query('SELECT pg_terminate_backend(pg_backend_pid())'), () => 'ROLLBACK'));
  const second = await pid();
  t.not(second, first);
  // A caller that judges the session unusable gives it back with an error: closed.
  const { client, release } = await connections.lease();
  t.is((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid, second);
  release(new Error('the caller found the session unusable'));
  await waitUntil(async () => !(await alive(second)), 'the connection given back with an error to close');
  t.not(await pid(), second);
});

/** Leases a connection (after a statement when `keptFirst`: the kept one), ends it on the server, gives it back without an error: the next statement must run on another. */
async function diesWhileLent(t: ExecutionContext, keptFirst: boolean): Promise<void> {
  const { connections, pid, alive } = await kept(t);
  if (keptFirst) await pid();
  const { client, release } = await connections.lease();
  const first = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await withAdmin((admin) => admin.query('SELECT pg_terminate_backend($1)', [first]));
  await waitUntil(async () => !(await alive(first)), 'the connection to end');
  await t.throwsAsync(client.query('SELECT 1'));
  release();
  t.not(await pid(), first);
}

test('kept connection: one lost while lent is closed when given back, even without an error', (t) => diesWhileLent(t, true));

// Nothing kept yet: the lease comes from the pool, and would become the kept connection.
test('kept connection: a connection of the pool that died while lent is not kept when given back without an error', (t) => diesWhileLent(t, false));

test('kept connection: one lost while it waits (the server closed it) is dropped at once, and the next statement runs on a new one', async (t) => {
  const { pool, pid, alive } = await kept(t);
  const first = await pid();
  await withAdmin((admin) => admin.query('SELECT pg_terminate_backend($1)', [first]));
  await waitUntil(async () => !(await alive(first)), 'the connection to end');
  await waitUntil(() => pool.totalCount === 0, 'the lost connection to leave the pool');
  const second = await pid();
  t.not(second, first);
});

test('kept connection: unused for idleMs, it is closed (not lent again from the pool); the next statement takes a new one', async (t) => {
  const { pool, pid, alive, checkouts } = await kept(t, { idleMs: 100 });
  const first = await pid();
  await waitUntil(async () => !(await alive(first)), 'the idle kept connection to close');
  t.is(pool.totalCount, 0);
  const second = await pid();
  t.not(second, first);
  t.is(checkouts(), 2);
});

test('kept connection: one in use keeps being kept while it works past idleMs', async (t) => {
  const { pool, connections, pid } = await kept(t, { idleMs: 200 });
  const first = await pid();
  await withConnection(connections, (client) => client.query('SELECT pg_sleep(0.5)'), () => undefined);
  t.is(await pid(), first);
  t.is(pool.idleCount, 0, 'still kept');
});

test('kept connection: close gives it back to the pool, also when a statement still has it; nothing is kept after', async (t) => {
  const { pool, connections, pid } = await kept(t);
  await pid();
  const { client, release } = await connections.lease();
  connections.close();
  t.is(pool.idleCount, 0, 'still lent');
  await client.query('SELECT 1');
  release();
  t.is(pool.idleCount, 1, 'back in the pool once its statement gave it back');
  // Nothing kept any more: each statement takes a connection of the pool and gives it back.
  await pid();
  t.is(pool.idleCount, 1);
});
