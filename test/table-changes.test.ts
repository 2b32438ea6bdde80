/**
 * A migration that changes a projection table while a runner (serve, catch-up) runs: the runner
 * read its tables' columns, foreign keys and triggers when it started, and builds its statements
 * from them. It must notice the change rather than apply batches as the tables were: a foreign key
 * or trigger added after it started went unchecked and unfired by its large inserts (run with
 * triggers off), and a widened column stopped its projection at the first value the old type could
 * not hold, until a restart.
 */
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { appendEnvelopes } from '../src/decide/append-batch.js';
import { createRunner } from '../src/projection/runner.js';
import { TablesChangedError } from '../src/projection/columns.js';
import { mayTurnTriggersOff } from '../src/projection/key-checks.js';
import { isTransient } from '../src/projection/transient.js';
import type { LogBatch } from '../src/log/types.js';
import { condaStoreProjections } from '../projections/index.js';
import { testPool, withClient } from './helpers/database.js';
import { checkpointRows, slots, tableRows, testLog, waitUntil, type TestLog } from './helpers/projection.js';
import { envelopeFor } from './helpers/samples.js';
import { collect } from './log-contract.js';

const slot = slots(3);

/**
 * A log holding a channel; a runner of conda-store's projections that has applied it (and so read
 * its tables). `described()`: how many times the runner has read its tables' description.
 */
async function runnerAfterChannel(t: ExecutionContext, setBasedKeyChecksFrom: number) {
  await slot(t);
  const db = await testLog(t);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
  const pool = testPool(t, db.url, 2);
  let described = 0;
  pool.on('connect', (client) => {
    const send = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string })?.text;
      if (text?.includes('pg_get_serial_sequence')) described += 1; // describeTables' first query
      return send(...args);
    };
  });
  // The large inserts below run with triggers off only for a role that may turn them off.
  if (setBasedKeyChecksFrom !== Infinity) {
    await withClient(db.url, async (client) => t.true(await mayTurnTriggersOff(client), 'this role may set session_replication_role (else the test proves nothing)'));
  }
  const runner = createRunner({ log: db.log, pool, projections: condaStoreProjections, logger, setBasedKeyChecksFrom });
  await appendEnvelopes(db.log, [envelopeFor('CondaChannelRegistered', { channel_id: 1, name: 'conda-forge' })]);
  await runner.apply(await batchFrom(db, 1));
  return {
    db,
    runner,
    reread: () => lines.filter((line) => line.includes('the projection tables changed since they were read')).length,
    described: () => described,
  };
}

const AUDIT_TRIGGER = `
  CREATE TABLE package_audit (id integer);
  CREATE FUNCTION package_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO package_audit VALUES (NEW.id); RETURN NEW; END $$;
  CREATE TRIGGER package_audit AFTER INSERT ON conda_package FOR EACH ROW EXECUTE FUNCTION package_audit();
`;

/** The log's events from `from` on, as one batch. */
async function batchFrom(db: TestLog, from: number): Promise<LogBatch> {
  const events = (await collect(db.log.readAll({ from }))).flat();
  return Object.assign(events, { position: events[events.length - 1]!.globalPosition });
}

const packages = (first: number, n: number) =>
  Array.from({ length: n }, (_, i) => envelopeFor('CondaPackageRegistered', { package_id: first + i, channel_id: 1, name: `pkg-${first + i}`, version: '1.0' }));

// Regression: the runner turns triggers off for an insert of many rows (session_replication_role
// = replica) when the table has no trigger of its own, as it read them at start.
test('a trigger a migration adds while the runner runs fires for every row of its large inserts', async (t) => {
  const { db, runner, reread } = await runnerAfterChannel(t, 1);
  await db.query(AUDIT_TRIGGER);
  await appendEnvelopes(db.log, packages(1, 40));
  await runner.apply(await batchFrom(db, 2));
  t.is((await tableRows(db.url, 'conda_package')).length, 40);
  t.deepEqual((await db.query<{ id: number }>('SELECT id FROM package_audit ORDER BY id')).map((row) => row.id), Array.from({ length: 40 }, (_, i) => i + 1));
  t.is(reread(), 1, 'the runner said it read the tables again, once');
});

// Regression: with triggers off, the runner checks the foreign keys it read at start itself; a key
// added since passed unchecked.
test('a foreign key a migration adds while the runner runs is checked for its large inserts: the batch stops at the first event that breaks it', async (t) => {
  const { db, runner } = await runnerAfterChannel(t, 1);
  await db.query(`
    CREATE TABLE approved_channel (id integer PRIMARY KEY);
    ALTER TABLE conda_package ADD CONSTRAINT conda_package_approved_fkey FOREIGN KEY (channel_id) REFERENCES approved_channel (id);
  `);
  await appendEnvelopes(db.log, packages(1, 40));
  await runner.apply(await batchFrom(db, 2));
  t.deepEqual(await tableRows(db.url, 'conda_package'), [], 'no package of an unapproved channel went in');
  const channels = Object.values(await checkpointRows(db.url)).find((row) => row.name === 'channels')!;
  t.is(channels.state, 'failed');
  t.is(channels.position, 1, 'stopped before the first package');
  t.regex(channels.error ?? '', /conda_package_approved_fkey/);
});

// Regression: statements cast every value to its column's type as read at start: a value the
// old type could not hold failed the batch, and the projection stopped at a valid event.
test('a column a migration widens while the runner runs takes the wider values of live batches, no projection stops', async (t) => {
  const { db, runner, reread } = await runnerAfterChannel(t, Infinity);
  await db.query('ALTER TABLE conda_package ALTER COLUMN version TYPE text');
  const long = `1.0.0+build.${'9'.repeat(80)}`;
  // Straight into the log: the catalogue still holds versions to the old width.
  await db.log.append({
    stream: 'conda_package-1',
    expectedVersion: 'no_stream',
    events: [{ id: crypto.randomUUID(), type: 'CondaPackageRegistered', data: { package_id: 1, channel_id: 1, name: 'numpy', version: long } }],
  });
  await runner.apply(await batchFrom(db, 2));
  t.deepEqual((await tableRows(db.url, 'conda_package')).map((row) => row.version), [long]);
  t.true(Object.values(await checkpointRows(db.url)).every((row) => row.state === 'running' && row.position === 2));
  t.is(reread(), 1);
});

test('a batch planned ahead before a migration widened a column is applied with the column as it is now', async (t) => {
  const { db, runner, reread } = await runnerAfterChannel(t, Infinity);
  const long = `1.0.0+build.${'9'.repeat(80)}`;
  await db.log.append({
    stream: 'conda_package-1',
    expectedVersion: 'no_stream',
    events: [{ id: crypto.randomUUID(), type: 'CondaPackageRegistered', data: { package_id: 1, channel_id: 1, name: 'numpy', version: long } }],
  });
  const batch = await batchFrom(db, 2);
  runner.planAhead(batch); // its statements for version as it was read
  await db.query('ALTER TABLE conda_package ALTER COLUMN version TYPE text');
  await runner.apply(batch);
  t.deepEqual((await tableRows(db.url, 'conda_package')).map((row) => row.version), [long]);
  t.true(Object.values(await checkpointRows(db.url)).every((row) => row.state === 'running' && row.position === 2));
  t.is(reread(), 1);
});

// The lock: a migration that has created its trigger but not committed when the batch checks the
// tables must not commit before the batch's inserts either. Without the lock the check saw no
// trigger, the inserts waited for the migration, then ran with triggers off: none fired.
test('a trigger whose migration commits while a large insert waits for it fires for the insert\'s rows', async (t) => {
  const { db, runner } = await runnerAfterChannel(t, 1);
  await appendEnvelopes(db.log, packages(1, 40));
  const batch = await batchFrom(db, 2);
  await withClient(db.url, async (migration) => {
    await migration.query('BEGIN');
    await migration.query(AUDIT_TRIGGER);
    const applied = runner.apply(batch);
    // The batch waits for the migration's lock on conda_package.
    await waitUntil(async () => (await db.query(`SELECT 1 FROM pg_locks WHERE NOT granted AND relation = 'conda_package'::regclass
                                                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).length > 0, 'the batch waiting for the migration');
    await migration.query('COMMIT');
    await applied;
  });
  t.is((await db.query('SELECT id FROM package_audit')).length, 40);
});

test('tables read again only when they changed: after a change of the database that leaves them as read, batches go as before', async (t) => {
  const { db, runner, reread, described } = await runnerAfterChannel(t, 1);
  t.is(described(), 1);
  // An index and a storage parameter on a written table move its stamp, not its description; a
  // table of its own is none of the runner's.
  await db.query('CREATE TABLE unrelated (id integer PRIMARY KEY); CREATE INDEX ON conda_package (summary); ALTER TABLE conda_package SET (fillfactor = 90)');
  await appendEnvelopes(db.log, packages(1, 40));
  await runner.apply(await batchFrom(db, 2));
  t.is(described(), 2, 'read once more (the stamp moved), found as before');
  await appendEnvelopes(db.log, packages(41, 40));
  await runner.apply(await batchFrom(db, 42));
  t.is(described(), 2, 'not read again: the stamp is the new one');
  t.is((await tableRows(db.url, 'conda_package')).length, 80);
  t.is(reread(), 0, 'no batch applied again');
});

test('a change of the tables is transient: a runner stopping while it happens gives its group back rather than failing', (t) => {
  t.true(isTransient(new TablesChangedError()));
});
