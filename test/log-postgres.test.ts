import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { APPEND_SQL, appendParameters } from '../src/log/postgres/append.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { freshDatabase } from './helpers/database.js';
import { collect, events, logContract } from './log-contract.js';

async function postgresLog(t: ExecutionContext) {
  const db = await freshDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  t.teardown(() => log.close());
  return Object.assign(log, { url: db.url });
}

logContract(test, postgresLog, 'postgres');

for (const statement of [
  'UPDATE event_store.events SET type = $$Changed$$',
  'DELETE FROM event_store.events',
  'TRUNCATE event_store.events',
]) {
  test(`postgres: the database refuses "${statement.split(' ')[0]}" on the log, even as a superuser in replica mode`, async (t) => {
    const log = await postgresLog(t);
    await log.append({ stream: 'immutable', events: events(2) });
    const client = new pg.Client({ connectionString: log.url });
    await client.connect();
    t.teardown(() => client.end());
    await t.throwsAsync(client.query(statement), { message: /append-only/ });
    await client.query('SET session_replication_role = replica');
    await t.throwsAsync(client.query(statement), { message: /append-only/ });
    t.is((await collect(log.readAll())).length, 2);
  });
}

test('postgres: append_events refuses to run after other writes of its transaction (it would break read ordering)', async (t) => {
  const log = await postgresLog(t);
  const client = new pg.Client({ connectionString: log.url });
  await client.connect();
  t.teardown(() => client.end());
  await client.query('BEGIN');
  await client.query('CREATE TEMP TABLE scratch (x int)');
  await client.query('INSERT INTO scratch VALUES (1)');
  await t.throwsAsync(
    client.query(APPEND_SQL, appendParameters([{ stream: 's', events: events(1) }])),
    { message: /first write of its transaction/ },
  );
  await client.query('ROLLBACK');
});

test('postgres: a reader does not skip an event whose transaction commits after a later one', async (t) => {
  const log = await postgresLog(t);
  // Transaction A takes its position first and stays open; B appends after it and commits.
  const a = new pg.Client({ connectionString: log.url });
  await a.connect();
  t.teardown(() => a.end());
  await a.query('BEGIN');
  await a.query(APPEND_SQL, appendParameters([{ stream: 'late', events: events(1, 'Late') }]));
  const [b] = await log.append({ stream: 'early', events: events(1) });
  t.is(b!.globalPosition, 2);
  // B is committed, but position 1 is in flight: a reader must not deliver B before A.
  const reading = collect(log.readAll({ batchSize: 10 }));
  await a.query('COMMIT');
  const all = await reading;
  t.deepEqual(all.map((e) => e.type), ['Late', 'Tested']);
});

test('postgres: a long-running write that is not an append does not hold readers back', async (t) => {
  const log = await postgresLog(t);
  const other = new pg.Client({ connectionString: log.url });
  await other.connect();
  t.teardown(() => other.end());
  // A transaction with an id, open for the whole test (a migration, a batch job, another database).
  await other.query('BEGIN');
  await other.query('CREATE TEMP TABLE busy (x int)');
  await other.query('INSERT INTO busy VALUES (1)');
  await log.append({ stream: 'meanwhile', events: events(3) });
  // readAll returns only once nothing is held back: it would wait for `other` if it counted.
  t.is((await collect(log.readAll())).length, 3);
  await other.query('ROLLBACK');
});
