import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import { randomUUID } from 'node:crypto';
import { APPEND_SQL, appendFast, appendParameters, eventJson, fastPathQuery } from '../src/log/postgres/append.js';
import { DuplicateKeyError, EventIdConflictError, FencedError, ForeignTransactionIdError, PreconditionFailedError, WrongExpectedVersionError } from '../src/log/errors.js';
import type { AppendRequest, EventInput, EventLog, LogBatch, RecordedEvent } from '../src/log/types.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { CARRY_AFTER_SHARE, createWakeups, LISTENER_LOCK, type Notification, type Wakeups } from '../src/log/postgres/wakeups.js';
import { createRecentAppends, inJsonbOrder } from '../src/log/postgres/recent-appends.js';
import { translateError } from '../src/log/postgres/errors.js';
import { isTransient } from '../src/projection/transient.js';
import { root, waitForExit } from './helpers/cli.js';
import { tcpProxy } from './helpers/nats.js';
import { connect, freshDatabase, testPool, urlFor, withAdmin, withClient } from './helpers/database.js';
import { slots, waitUntil } from './helpers/projection.js';
import { collect, events, logContract } from './log-contract.js';

/**
 * A database of the test's own, once one of a few slots is free: the tests of this file all start
 * at once, and some open a dozen connections (racing writers, producers with a pool each); all
 * together they could exhaust the server's max_connections (100 by default).
 */
const slot = slots(10);
async function ownDatabase(t: ExecutionContext) {
  await slot(t);
  return freshDatabase(t);
}

async function postgresLog(t: ExecutionContext) {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  t.teardown(() => log.close());
  return Object.assign(log, { url: db.url });
}

logContract(test, postgresLog, 'postgres');

async function positionLockHolders(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 7402 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
  );
  return rows[0]!.n;
}

/** Until a backend of this test's database, other than `client`'s, waits for a lock. */
async function untilOneWaits(client: pg.Client, what: string): Promise<void> {
  await waitUntil(
    async () => (await client.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).rowCount! > 0,
    what,
  );
}

/** The two statements an append may run, as a query for a client of one's own (inside a transaction). */
const appendPaths = {
  'append_events()': (request: AppendRequest, notification?: Notification) => ({ text: APPEND_SQL, values: appendParameters([request], notification) }),
  'fast path': (request: AppendRequest, notification?: Notification) => {
    const { text, values } = fastPathQuery([{ request, notification }]);
    return { text, values };
  },
};

/** LISTEN to the log's channel as a listener the log knows of (it holds the listeners' lock). */
const LISTEN_AS_A_LISTENER = `LISTEN event_store_appended; SELECT pg_advisory_lock_shared(${LISTENER_LOCK.join(', ')})`;

/**
 * Returns once `wakeups` listens (its first wait starts the listener, and the listener's set-up
 * wakes the waiters): a wait returns after its own time whether or not the listener is in place.
 */
async function untilListening(wakeups: Wakeups): Promise<void> {
  await wakeups.wait(60_000, AbortSignal.timeout(30_000), wakeups.seen());
}

/** A client listening to the log's channel, and the payloads it has heard, in order. */
async function channelListener(t: ExecutionContext, url: string) {
  const client = await connect(t, url);
  const heard: { payload: string; pid: number }[] = [];
  client.on('notification', (message) => heard.push({ payload: message.payload ?? '', pid: message.processId }));
  await client.query(LISTEN_AS_A_LISTENER);
  /** Everything heard before a marker NOTIFY sent now (notifications arrive in commit order). */
  const heardBeforeMarker = async () => {
    const marker = randomUUID();
    await withClient(url, (other) => other.query(`SELECT pg_notify('event_store_appended', $1)`, [marker]));
    await waitUntil(() => heard.some((h) => h.payload === marker), 'the marker notification');
    return heard.slice(0, heard.findIndex((h) => h.payload === marker));
  };
  return { heard, heardBeforeMarker };
}

for (const statement of [
  'UPDATE event_store.events SET type = $$Changed$$',
  'DELETE FROM event_store.events',
  'TRUNCATE event_store.events',
]) {
  test(`postgres: the database refuses "${statement.split(' ')[0]}" on the log, even as a superuser in replica mode`, async (t) => {
    const log = await postgresLog(t);
    await log.append({ stream: 'immutable', events: events(2) });
    const client = await connect(t, log.url);
    await t.throwsAsync(client.query(statement), { message: /append-only/ });
    await client.query('SET session_replication_role = replica');
    await t.throwsAsync(client.query(statement), { message: /append-only/ });
    t.is((await collect(log.readAll())).length, 2);
  });
}

test('postgres: after other writes of its transaction, the fast path writes nothing and append_events refuses (it would break read ordering)', async (t) => {
  const log = await postgresLog(t);
  const client = await connect(t, log.url);
  await client.query('BEGIN');
  await client.query('CREATE TEMP TABLE scratch (x int)');
  await client.query('INSERT INTO scratch VALUES (1)');
  // No row: the caller (append.ts) then falls back to append_events, which says why.
  t.deepEqual((await client.query(appendPaths['fast path']({ stream: 's', events: events(1) }))).rows, []);
  await t.throwsAsync(client.query(appendPaths['append_events()']({ stream: 's', events: events(1) })), { message: /first write of its transaction/ });
  await client.query('ROLLBACK');
});

// readBatch sends the bound and the read as one simple query (one implicit transaction): it must
// be READ COMMITTED, two snapshots, even where the database's default isolation is another.
// A reader of some types only (read-all-of-types.sql) must not move past the event in flight either.
const readers = [{ name: 'reader', types: undefined, expected: ['Late', 'Tested'] }, { name: 'reader of one type', types: ['Late'], expected: ['Late'] }];
for (const [path, query] of Object.entries(appendPaths)) for (const isolation of ['read committed', 'repeatable read']) for (const reader of readers) {
  test(`postgres: a ${reader.name} does not skip an event whose transaction commits after a later one (${path}, default isolation ${isolation})`, async (t) => {
    const log = await postgresLog(t);
    await withAdmin((admin) => admin.query(`ALTER DATABASE "${new URL(log.url).pathname.slice(1)}" SET default_transaction_isolation = '${isolation}'`));
    // Transaction A takes its position first and stays open; B appends after it and commits.
    const a = await connect(t, log.url);
    await a.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    await a.query(query({ stream: 'late', events: events(1, 'Late') }));
    const [b] = await log.append({ stream: 'early', events: events(1) });
    t.is(b!.globalPosition, 2);
    // B is committed, but position 1 is in flight: a reader must not deliver B before A, nor pass over A.
    const reading = collect(log.readAll({ batchSize: 10, types: reader.types }));
    await a.query('COMMIT');
    const all = await reading;
    t.deepEqual(all.map((e) => e.type), reader.expected);
  });
}

// Regression: append_events() decides under its stream locks, and relied on each statement's
// snapshot being taken after the wait (READ COMMITTED). Where the database's default isolation was
// REPEATABLE READ or SERIALIZABLE, it decided on the log as it was before the appender it had
// waited for: an 'any' append after a concurrent one failed with a raw unique violation (which
// the ingester took for the event's fault, and rejected for good); a purge could be accepted
// beside an environment that had come in meanwhile.
// The settings also hold with a DATABASE_URL that has options of its own (node-postgres let those
// replace the code's).
for (const [isolation, urlOptions] of [['repeatable read', ''], ['serializable', ''], ['repeatable read', '-c statement_timeout=60000']] as const) {
  test(`postgres: an append that waited for another appender's lock decides on what it committed (default isolation ${isolation}${urlOptions && ', URL options'})`, async (t) => {
    const db = await ownDatabase(t);
    const log = createPostgresEventLog({ connectionString: urlOptions ? `${db.url}?options=${encodeURIComponent(urlOptions)}` : db.url });
    t.teardown(() => log.close());
    await withAdmin((admin) => admin.query(`ALTER DATABASE "${new URL(db.url).pathname.slice(1)}" SET default_transaction_isolation = '${isolation}'`));
    await log.append({ stream: 's', events: events(1) });
    // A holds the stream's lock, its event in flight; the log's append (two streams: append_events()) waits for it.
    const a = await connect(t, db.url);
    await a.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    await a.query(appendPaths['append_events()']({ stream: 's', events: events(1, 'First') }));
    const appending = log.append([{ stream: 's', expectedVersion: 'any', events: events(1, 'Second') }, { stream: 't', events: events(1) }]);
    const waiting = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 7401 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    await waitUntil(async () => (await a.query(waiting)).rowCount === 1, 'the append to wait for the stream lock');
    await a.query('COMMIT');
    const [second] = await appending;
    t.like(second, { stream: 's', streamVersion: 2, duplicate: false });
    t.deepEqual((await log.readStream('s')).map((e) => e.type), ['Tested', 'First', 'Second']);
  });
}

// Regression (found in review): append_events() looks its event ids up before it inserts them; an
// id another transaction had inserted and not committed yet was not seen, and once that one
// committed the insert failed with a raw unique violation, neither a conflict naming the event nor
// a duplicate (which the ingester took for the event's fault, and rejected).
for (const [what, sameStream] of [['another stream: a conflict naming the event', false], ['the same stream and content: a duplicate', true]] as const) {
  test(`postgres: an event id committed by another append while this one was deciding, on ${what}`, async (t) => {
    const log = await postgresLog(t);
    const [event] = events(1);
    const a = await connect(t, log.url);
    await a.query('BEGIN ISOLATION LEVEL READ COMMITTED');
    await a.query(appendPaths['append_events()']({ stream: 's', events: [event!] }));
    // Two streams: through append_events(). Its insert waits on A's uncommitted row in the id key.
    const appending = log.append([{ stream: sameStream ? 's' : 'other', events: [event!] }, { stream: 't', events: events(1) }]);
    void appending.catch(() => undefined); // awaited below
    // (On the same stream, it waits for A's stream lock instead, and then sees A's event.)
    // Not asked through A: within a transaction, the activity statistics are read once.
    const watcher = await connect(t, log.url);
    await untilOneWaits(watcher, 'the append to wait for A');
    await a.query('COMMIT');
    if (sameStream) {
      // The duplicate is recognised by its id and content, at A's position and version.
      const [again] = await appending;
      t.like(again, { id: event!.id, stream: 's', streamVersion: 0, globalPosition: 1, duplicate: true });
    } else {
      const error = await t.throwsAsync(appending, { instanceOf: EventIdConflictError });
      t.is(error!.eventId, event!.id);
      t.deepEqual((await log.readStream('t')).length, 0, 'nothing of the call was appended');
    }
  });
}

// reserveIds moves a sequence with one setval: safe only if no allocation takes an id between its
// read of the sequence and the setval. Allocations hold the kind's lock shared; the reservation
// waits for them, exclusively, and reads the sequence after them.
test('postgres: reserveIds waits for allocations in flight and never puts the allocator back below an id they took', async (t) => {
  const log = await postgresLog(t);
  const allocator = await connect(t, log.url);
  await allocator.query('BEGIN');
  await allocator.query("SELECT pg_advisory_xact_lock_shared(7408, hashtext('namespace'))"); // as ids.sql does
  const reserving = log.reserveIds('namespace', 1000);
  const waiting = "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 7408 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
  await waitUntil(async () => (await allocator.query(waiting)).rowCount === 1, 'the reservation to wait for the allocation');
  // The allocation in flight takes ids past the one being reserved.
  await allocator.query("SELECT setval('event_store.ids_namespace', 1500)");
  await allocator.query('COMMIT');
  await reserving;
  t.deepEqual(await log.allocateIds('namespace', 1), [1501]);
});

// Regression: pg_locks shows 32-bit transaction ids; the reader widened an appender's id that was
// above its snapshot's xmax as if it came from the previous epoch. The bound went negative, every
// committed event became readable, and a subscription skipped the one still in flight (seen as a
// projection missing an EnvironmentCreated while four writers appended concurrently).
test('postgres: reader bound with an appender that got its transaction id after the reader\'s snapshot', async (t) => {
  const log = await postgresLog(t);
  const [reader, appender, other] = await Promise.all([connect(t, log.url), connect(t, log.url), connect(t, log.url)]);
  // A transaction in progress that is not an append: read_bound() then reads the lock table (the
  // path under test) rather than taking the snapshot's xmax at once.
  await other.query('BEGIN');
  await other.query('SELECT pg_current_xact_id()');
  // The reader's snapshot first (repeatable read keeps it for the whole transaction; pg_locks is
  // read live at each statement), then the appender takes its id: it is above the snapshot's xmax.
  await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  const { rows: [snapshot] } = await reader.query<{ xmax: string }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax');
  await appender.query('SELECT pg_current_xact_id()'); // another transaction takes the id at xmax
  await appender.query('BEGIN');
  await appender.query(APPEND_SQL, appendParameters([{ stream: 'late', events: events(1, 'Late') }]));
  const { rows: [inFlight] } = await appender.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
  t.true(BigInt(inFlight!.xid) > BigInt(snapshot!.xmax), 'the appender got its id after the snapshot');

  const { rows: [read] } = await reader.query<{ bound: string }>('SELECT bound FROM event_store.read_bound()');
  await reader.query('COMMIT');
  t.is(read!.bound, snapshot!.xmax, 'bounded by the snapshot, not wrapped below zero');

  // And end to end: a later append commits while the first is in flight; the reader waits for both.
  const [later] = await log.append({ stream: 'early', events: events(1) });
  t.is(later!.globalPosition, 2);
  const reading = collect(log.readAll({ batchSize: 10 }));
  await appender.query('COMMIT');
  t.deepEqual((await reading).map((e) => e.globalPosition), [1, 2]);
  await other.query('ROLLBACK');
});

test('postgres: six producers (a pool each) append one event at a time while a subscription reads: every position arrives, in order, none skipped', async (t) => {
  const log = await postgresLog(t);
  const producers = Array.from({ length: 6 }, () => createPostgresEventLog({ connectionString: log.url, poolSize: 1 }));
  t.teardown(() => Promise.all(producers.map((p) => p.close())).then(() => undefined));
  const perProducer = 150;
  const total = producers.length * perProducer;
  // Small batches, read while the producers write: many reads land between an appender taking its
  // transaction id and committing. The loop ends on the last position, so a skip cannot hang it.
  const controller = new AbortController();
  const positions: number[] = [];
  const reading = (async () => {
    for await (const batch of log.subscribe({ batchSize: 7, signal: controller.signal })) {
      positions.push(...batch.map((e) => e.globalPosition));
      if (positions[positions.length - 1]! >= total) controller.abort();
    }
  })();
  t.teardown(() => controller.abort());
  void reading.catch(() => undefined); // awaited below; handled now in case a producer fails first
  await Promise.all(producers.map(async (producer, p) => {
    for (let i = 0; i < perProducer; i++) await producer.append({ stream: `producer-${p}`, events: events(1) });
  }));
  await reading;
  t.deepEqual(positions, Array.from({ length: total }, (_, i) => i + 1));
});

for (const [path, query] of Object.entries(appendPaths)) test(`postgres: an append canceled at the position lock leaves no lock behind; the next append goes through (${path})`, async (t) => {
  const log = await postgresLog(t);
  const [holder, appender] = await Promise.all([connect(t, log.url), connect(t, log.url)]);
  // Another session holds the position lock: the append waits at step 5 until its timeout cancels it.
  await holder.query('SELECT pg_advisory_lock(7402, 0)');
  await appender.query("SET statement_timeout = '300ms'");
  await t.throwsAsync(appender.query(query({ stream: 'canceled', events: events(1) })), { message: /statement timeout/ });
  await holder.query('SELECT pg_advisory_unlock(7402, 0)');

  t.is(await positionLockHolders(appender), 0, 'nobody holds the position lock');
  await appender.query(query({ stream: 'after', events: events(1) }));
  t.deepEqual((await collect(log.readAll())).map((e) => e.stream), ['after']);
});

// The fast path takes the position lock (a session lock) and releases it within one statement. A
// statement that fails in between (here: no right to the position sequence, after the lock) left
// its connection holding it, back in the pool, and every other appender waited for it for good.
test('postgres: a fast-path append that fails while holding the position lock releases it; other appenders go on', async (t) => {
  const log = await postgresLog(t);
  const role = `cse_test_${randomUUID().slice(0, 8)}`;
  await withAdmin((admin) => admin.query(`CREATE ROLE ${role} LOGIN`));
  t.teardown(async () => {
    await withClient(log.url, (client) => client.query(`DROP OWNED BY ${role}`));
    await withAdmin((admin) => admin.query(`DROP ROLE ${role}`));
  });
  await withClient(log.url, (client) => client.query(`GRANT USAGE ON SCHEMA event_store TO ${role}; GRANT SELECT, INSERT ON event_store.events TO ${role}`));
  const asRole = new URL(log.url);
  asRole.username = role;
  const limited = createPostgresEventLog({ connectionString: asRole.toString(), poolSize: 1 });
  t.teardown(() => limited.close());

  await t.throwsAsync(limited.append({ stream: 'refused', events: events(1) }), { message: /permission denied for sequence global_position_seq/ });
  const observer = await connect(t, log.url);
  t.is(await positionLockHolders(observer), 0, 'the failed connection let the position lock go');
  const [appended] = await log.append({ stream: 'after', events: events(1) });
  t.is(appended!.streamVersion, 0);
  t.deepEqual((await collect(log.readAll())).map((e) => e.stream), ['after']);
});

test('postgres: reader bound: the snapshot\'s xmax when nothing is in flight or only other writers are; the oldest appender in flight otherwise', async (t) => {
  const log = await postgresLog(t);
  const [reader, appender, writer] = await Promise.all([connect(t, log.url), connect(t, log.url), connect(t, log.url)]);
  /** read_bound() and the xmax of the snapshot it ran in (repeatable read: one snapshot for both). */
  const boundAndXmax = async () => {
    await reader.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const { rows: [row] } = await reader.query<{ bound: string; xmax: string }>(
      'SELECT b.bound, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax FROM event_store.read_bound() AS b');
    await reader.query('COMMIT');
    return row!;
  };
  // Nothing of this test in flight (the lock table is read only if another test's transaction is).
  let { bound, xmax } = await boundAndXmax();
  t.is(bound, xmax);
  // A write that is not an append: not a reason to stop below it.
  await writer.query('BEGIN');
  await writer.query('CREATE TEMP TABLE busy (x int)');
  ({ bound, xmax } = await boundAndXmax());
  t.is(bound, xmax);
  // An appender in flight: the bound is its transaction id.
  await appender.query('BEGIN');
  await appender.query(APPEND_SQL, appendParameters([{ stream: 'in-flight', events: events(1) }]));
  const { rows: [inFlight] } = await appender.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid');
  // A snapshot's xmax is the latest completed transaction id + 1, not the next id to assign: with
  // the writer and the appender the last ones to get an id, it is the writer's (a safe bound, but
  // not the one this step checks). A transaction completing after them moves it past both.
  await reader.query('SELECT pg_current_xact_id()');
  ({ bound } = await boundAndXmax());
  t.is(bound, inFlight!.xid);
  await appender.query('COMMIT');
  await writer.query('ROLLBACK');
  ({ bound, xmax } = await boundAndXmax());
  t.is(bound, xmax);
});

test('postgres: a long-running write that is not an append does not hold readers back', async (t) => {
  const log = await postgresLog(t);
  const other = await connect(t, log.url);
  // A transaction with an id, open for the whole test (a migration, a batch job, another database).
  await other.query('BEGIN');
  await other.query('CREATE TEMP TABLE busy (x int)');
  await other.query('INSERT INTO busy VALUES (1)');
  await log.append({ stream: 'meanwhile', events: events(3) });
  // readAll returns only once nothing is held back: it would wait for `other` if it counted.
  t.is((await collect(log.readAll())).length, 3);
  await other.query('ROLLBACK');
});

// Regression: a notification that arrived while a subscription was reading (after its read had
// started, before it waited again) woke nobody, and the event waited for the 1 s safety poll.
test('postgres: a wake-up that comes while a subscriber reads is not lost; an append wakes this process at once', async (t) => {
  const db = await ownDatabase(t);
  t.timeout(20_000); // with the bug, the waits below last 60 s
  const pool = testPool(t, db.url, 1);
  const wakeups = createWakeups(pool, db.url, () => undefined);
  t.teardown(() => wakeups.close());
  const other = await connect(t, db.url);
  await untilListening(wakeups);

  // "Reading": the count is taken, then another process appends and notifies.
  const seen = wakeups.seen();
  await other.query(`SELECT pg_notify('event_store_appended', '')`);
  while (wakeups.seen() === seen) await new Promise((resolve) => setTimeout(resolve, 5));
  await wakeups.wait(60_000, undefined, seen); // returns at once: the wake-up came meanwhile

  // An append of this process wakes its own subscribers without a trip through PostgreSQL.
  const waiting = wakeups.wait(60_000);
  wakeups.appended({ wrote: true });
  await waiting;
  t.pass();
});

// Regression (found in review): an append that committed while the listener was being set up
// (the LISTEN not in place yet) was told to nobody here, and waited for the 1 s safety poll.
test('postgres: the first wait returns once the listener is in place, for a read of what committed meanwhile', async (t) => {
  const db = await ownDatabase(t);
  const wakeups = createWakeups(testPool(t, db.url, 1), db.url, () => undefined);
  t.teardown(() => wakeups.close());
  const seen = wakeups.seen();
  // With the bug, this returns when the signal aborts, nothing seen.
  await wakeups.wait(600_000, AbortSignal.timeout(30_000), seen);
  t.not(wakeups.seen(), seen);
});

/** Wake-ups of a database of the test's own whose listener connects through a TCP proxy; the errors they report. */
async function wakeupsThroughProxy(t: ExecutionContext, probeMs: number) {
  const db = await ownDatabase(t);
  const proxy = await tcpProxy(t, { host: '127.0.0.1', port: Number(new URL(db.url).port || 5432) });
  const errors: string[] = [];
  const wakeups = createWakeups(testPool(t, db.url, 1), proxy.urlThrough(db.url), (error) => void errors.push((error as Error).message), 5, probeMs);
  t.teardown(() => wakeups.close());
  return { db, proxy, errors, wakeups };
}

/** The next wait of `wakeups` listens again (a new connection), and hears another process's notification. */
async function listensAgainAndHears(t: ExecutionContext, wakeups: Wakeups, url: string) {
  await untilListening(wakeups);
  const listening = wakeups.seen();
  const other = await connect(t, url);
  await other.query(`SELECT pg_notify('event_store_appended', 'from another process')`);
  await wakeups.wait(60_000, AbortSignal.timeout(30_000), listening);
  t.not(wakeups.seen(), listening, 'the notification was heard');
}

// Regression (found in review): a listening connection cut without a word (a partition) raised
// no error; its LISTEN heard nothing more, for good, and every process fell back to its 1 s poll.
test('postgres: a listening connection that goes silent is dropped when its probe goes unanswered, and listens again', async (t) => {
  const { db, proxy, errors, wakeups } = await wakeupsThroughProxy(t, 200);
  await untilListening(wakeups); // through the proxy
  proxy.freeze();
  await waitUntil(() => errors.some((message) => message.includes('did not answer within 200 ms')), 'the probe to give up');
  // A new connection: the partition was the old one's.
  await listensAgainAndHears(t, wakeups, db.url);
});

// Regression (found by a review): close() ended the listening connection but left its probe's
// timer, which then found the connection closed and reported it lost, after the log was closed.
test('postgres: after close(), the listener\'s probe reports nothing', async (t) => {
  const db = await ownDatabase(t);
  const errors: unknown[] = [];
  const probeMs = 50;
  const wakeups = createWakeups(testPool(t, db.url, 1), db.url, (error) => void errors.push(error), 5, probeMs);
  await untilListening(wakeups);
  await wakeups.close();
  // What is checked is an absence: ten probe intervals go by, and nothing is reported.
  await new Promise((resolve) => setTimeout(resolve, 10 * probeMs));
  t.deepEqual(errors, []);
});

// Regression (found in review): node-postgres reports a terminated backend twice; the second
// report threw away the listener being connected again, a third connection started beside it, and
// the one left over was never closed (sessions holding the listener lock after close()).
test('postgres: a listener terminated again and again leaves one listening session, and none after close()', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  t.teardown(() => log.close().catch(() => undefined));
  const controller = new AbortController();
  const subscribers = Array.from({ length: 4 }, async () => {
    for await (const batch of log.subscribe({ signal: controller.signal })) void batch;
  });
  const client = await connect(t, db.url);
  const listeners = async () =>
    (await client.query<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted
                                          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, [...LISTENER_LOCK])).rows.map((row) => row.pid);
  await waitUntil(async () => (await listeners()).length === 1, 'the subscribers to listen');
  for (let i = 0; i < 5; i++) {
    const [pid] = await listeners();
    await client.query('SELECT pg_terminate_backend($1)', [pid]);
    await waitUntil(async () => !(await listeners()).includes(pid!), 'the terminated session to go');
    await waitUntil(async () => (await listeners()).length === 1, 'one listener again');
  }
  controller.abort();
  await Promise.all(subscribers);
  await log.close();
  t.deepEqual(await listeners(), []);
});

// Regression (found in review): the NOTIFY of its own was due an interval after the last
// notification handed out, so carrying appends that kept coming but were slow to commit put it
// off again and again, and the appends before them went untold.
test('postgres: an append left untold gets a NOTIFY of its own an interval later, while carrying appends keep coming without committing', async (t) => {
  const db = await ownDatabase(t);
  const { heard } = await channelListener(t, db.url);
  const pool = testPool(t, db.url, 1);
  const wakeups = createWakeups(pool, db.url, () => undefined, 100);
  t.teardown(() => wakeups.close());
  const first = wakeups.due()!;
  wakeups.appended({ wrote: true, notification: first, sent: true });
  wakeups.appended({ wrote: true }); // to be told of
  // Appends are handed the notification again and again, and are still running.
  const claiming = setInterval(() => wakeups.due(), 5);
  t.teardown(() => clearInterval(claiming));
  await waitUntil(() => heard.some((h) => h.payload === first.payload), 'a NOTIFY of its own', { timeoutMs: 10_000 });
  t.pass();
});

test('postgres: an append of this process wakes its subscribers to its types only; a notification from another process wakes all', async (t) => {
  const db = await ownDatabase(t);
  t.timeout(20_000); // a wait below that is not woken lasts 60 s
  const pool = testPool(t, db.url, 1);
  const wakeups = createWakeups(pool, db.url, () => undefined);
  t.teardown(() => wakeups.close());
  await untilListening(wakeups);
  const builds = ['BuildStarted'];
  const namespaces = ['NamespaceCreated'];
  const before = { builds: wakeups.seen(builds), namespaces: wakeups.seen(namespaces), any: wakeups.seen() };

  const buildsWoken = wakeups.wait(60_000, undefined, undefined, builds);
  let namespacesWokenYet = false;
  const namespacesWoken = wakeups.wait(60_000, undefined, undefined, namespaces).then(() => (namespacesWokenYet = true));
  wakeups.appended({ wrote: true, types: ['BuildStarted', 'BuildCompleted'] });
  await buildsWoken;
  await new Promise(setImmediate); // a waiter woken by that append would have settled by now
  t.false(namespacesWokenYet, 'no wake-up for a subscriber to other types');
  t.not(wakeups.seen(builds), before.builds);
  t.not(wakeups.seen(), before.any);
  t.is(wakeups.seen(namespaces), before.namespaces);

  await withClient(db.url, (other) => other.query(`SELECT pg_notify('event_store_appended', 'elsewhere')`));
  await namespacesWoken;
  t.not(wakeups.seen(namespaces), before.namespaces);
});

for (const [path, query] of Object.entries(appendPaths)) test(`postgres: the notification an append carries goes out when its transaction commits, never when it rolls back (${path})`, async (t) => {
  const db = await ownDatabase(t);
  const { heardBeforeMarker } = await channelListener(t, db.url);
  const appender = await connect(t, db.url);
  const notification = (payload: string): Notification => ({ channel: 'event_store_appended', payload, covers: 0 });
  await appender.query('BEGIN');
  t.is((await appender.query(query({ stream: 'rolled-back', events: events(1) }, notification('rolled back')))).rowCount, 1);
  await appender.query('ROLLBACK');
  await appender.query(query({ stream: 'without', events: events(1) }));
  t.is((await appender.query(query({ stream: 'with', events: events(1) }, notification('committed')))).rowCount, 1);
  t.deepEqual((await heardBeforeMarker()).map((h) => h.payload), ['committed']);
});

test('postgres: an append carries the notification itself: it comes from the appending connection, not from a NOTIFY of its own', async (t) => {
  const db = await ownDatabase(t);
  const { heard } = await channelListener(t, db.url);
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1, notifyIntervalMs: 60_000 });
  t.teardown(() => log.close());
  // A subscriber makes the log listen: a NOTIFY of its own would then go out on that connection.
  const reading = log.subscribe({ signal: AbortSignal.timeout(60_000) })[Symbol.asyncIterator]();
  t.teardown(() => reading.return?.(undefined));
  const pid = (await log.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  await log.append({ stream: 'carrier', events: events(1) });
  await waitUntil(() => heard.length > 0, 'the notification');
  t.is(heard[0]!.pid, pid);
});

// Driven by hand: the carrying append's window (from 80 % of the interval) and the deadline of a
// NOTIFY of its own are 40 ms apart here; a busy wait holds the event loop, so no timer runs between.
test('postgres: appends that carry the notification leave nothing to a NOTIFY of its own; a failed carrier does', async (t) => {
  const db = await ownDatabase(t);
  const { heardBeforeMarker } = await channelListener(t, db.url);
  const pool = testPool(t, db.url, 1);
  const wakeupsWithCarrier = () => {
    const wakeups = createWakeups(pool, db.url, () => undefined, 200);
    const carrier = () => {
      for (;;) {
        const notification = wakeups.due();
        if (notification) return notification;
      }
    };
    const first = carrier();
    wakeups.appended({ wrote: true, notification: first, sent: true });
    t.is(wakeups.due(), undefined, 'not due again within the interval');
    wakeups.appended({ wrote: true }); // to be told by the next carrier
    return { wakeups, carrier, payload: first.payload };
  };

  const told = wakeupsWithCarrier();
  told.wakeups.appended({ wrote: true, notification: told.carrier(), sent: true });
  await told.wakeups.close();

  const failed = wakeupsWithCarrier();
  failed.wakeups.appended({ wrote: false, notification: failed.carrier(), sent: false });
  await failed.wakeups.close(); // sends at once what was still to be sent

  const heard = await heardBeforeMarker();
  t.is(heard.filter((h) => h.payload === told.payload).length, 0);
  t.is(heard.filter((h) => h.payload === failed.payload).length, 1);
});

test('postgres: a burst of appends sends a few spaced notifications, the last one with or after the last append', async (t) => {
  const db = await ownDatabase(t);
  const intervalMs = 200;
  const log = createPostgresEventLog({ connectionString: db.url, notifyIntervalMs: intervalMs });
  t.teardown(() => log.close());
  const listener = await connect(t, db.url);
  const heard: number[] = [];
  listener.on('notification', () => heard.push(performance.now()));
  await listener.query(LISTEN_AS_A_LISTENER);

  const started = performance.now();
  let lastStarted = started;
  for (let i = 0; i < 30; i++) {
    lastStarted = performance.now();
    await log.append({ stream: `burst-${i}`, events: events(1) });
  }
  const finished = performance.now();
  // The last append is told of by a notification of its own transaction (if it carried one) or by
  // a later one: either way, one heard after it started.
  await waitUntil(() => heard.some((at) => at > lastStarted), 'a notification after the last append');
  // One at once, then at most one per carrying window (an append takes the notification from 80 %
  // of the interval on), and one of its own after the burst: the bound follows from the burst's own
  // duration. (It used the whole interval: a slow burst, 30 appends in 1.7 s on a loaded machine,
  // gave 12 spaced notifications against a bound of 11.)
  const spacingMs = intervalMs * CARRY_AFTER_SHARE;
  t.true(heard.length <= 2 + Math.ceil((finished - started) / spacingMs), `${heard.length} NOTIFYs for 30 appends in ${Math.round(finished - started)} ms`);
});

test('postgres: an appender sends no notification while no other session listens; a listener that comes is told from the next check on', async (t) => {
  const db = await ownDatabase(t);
  // Listens without the listeners' lock: it hears what is sent, and the log does not know of it.
  const unknown = await connect(t, db.url);
  const heardByUnknown: string[] = [];
  unknown.on('notification', (message) => heardByUnknown.push(message.payload ?? ''));
  await unknown.query('LISTEN event_store_appended');
  const pool = testPool(t, db.url, 2);
  const wakeups = createWakeups(pool, db.url, () => undefined, 5);
  t.teardown(() => wakeups.close());

  // Until a check has answered, another session may listen: the first append carries one.
  const first = wakeups.due();
  t.truthy(first);
  wakeups.appended({ wrote: true, notification: first, sent: true });
  await waitUntil(() => !wakeups.othersListen(), 'the check to find no other listener');
  t.is(wakeups.due(), undefined);
  wakeups.appended({ wrote: true }); // nothing left to tell: no NOTIFY of its own either

  const registered = await connect(t, db.url);
  const heard: string[] = [];
  registered.on('notification', (message) => heard.push(message.payload ?? ''));
  await registered.query(LISTEN_AS_A_LISTENER);
  // Checked again at most a second after the last check, on the next due().
  let notification: Notification | undefined;
  await waitUntil(() => (notification = wakeups.due()) !== undefined, 'the log to hear of the listener', { intervalMs: 50 });
  wakeups.appended({ wrote: true }); // not carried: a NOTIFY of its own follows within the interval
  await waitUntil(() => heard.includes(notification!.payload), 'the NOTIFY');
  // Each listening session gets the NOTIFY on its own socket, in no set order.
  await waitUntil(() => heardByUnknown.includes(notification!.payload), 'the NOTIFY on the session that listened without the lock');
  // The session that listened without the lock heard only that NOTIFY, none before it.
  t.deepEqual(heardByUnknown, [notification!.payload]);
});

test('postgres: a process\'s own listener does not count as another listener', async (t) => {
  const db = await ownDatabase(t);
  const pool = testPool(t, db.url, 2);
  const wakeups = createWakeups(pool, db.url, () => undefined, 5);
  t.teardown(() => wakeups.close());
  // A subscriber makes the process listen, holding the listeners' lock: wait() returns once the
  // listener is connected. (Regression, a flaky test: waiting for the lock in pg_locks instead,
  // the check could come before the process had the listener's answer, and ask on the pool,
  // where the process's own lock counts as another's; nothing asked again, and the wait timed out.)
  await untilListening(wakeups);
  t.is((await pool.query(
    `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = ${LISTENER_LOCK[0]} AND objid = ${LISTENER_LOCK[1]} AND granted
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).rowCount, 1);
  // The first check, asked on the listening connection: its own lock does not stand in the way.
  t.truthy(wakeups.due());
  await waitUntil(() => !wakeups.othersListen(), 'the check to find no other listener');
});

// Regression: a check made while this process's listener was being connected was asked on the
// pool, where the listener's lock, already held, counted as another session's.
test('postgres: a check made while the process\'s own listener is connecting waits for it, and finds no other listener', async (t) => {
  const db = await ownDatabase(t);
  const pool = testPool(t, db.url, 1);
  const wakeups = createWakeups(pool, db.url, () => undefined, 5);
  t.teardown(() => wakeups.close());
  // The pool's one connection is busy for a second: a check asked on the pool would run after the
  // listener has taken its lock.
  const busy = pool.query('SELECT pg_sleep(1)');
  t.teardown(() => busy.then(() => undefined, () => undefined));
  const waiting = new AbortController();
  t.teardown(() => waiting.abort());
  void wakeups.wait(60_000, waiting.signal); // starts connecting the listener
  wakeups.due(); // the first check, while it connects; nothing asks again
  await waitUntil(() => !wakeups.othersListen(), 'the check to find no other listener', { timeoutMs: 10_000 });
  t.pass();
});

test('postgres: closing the log sends the NOTIFY still waiting for its interval at once', async (t) => {
  const db = await ownDatabase(t);
  t.timeout(30_000); // without the flush on close, the second NOTIFY waits a minute
  const log = createPostgresEventLog({ connectionString: db.url, notifyIntervalMs: 60_000 });
  const listener = await connect(t, db.url);
  let heard = 0;
  listener.on('notification', () => heard++);
  await listener.query(LISTEN_AS_A_LISTENER);
  await log.append({ stream: 'first', events: events(1) }); // notified at once
  await log.append({ stream: 'second', events: events(1) }); // due at the end of the interval
  await log.close();
  while (heard < 2) await new Promise((resolve) => setTimeout(resolve, 10));
  t.is(heard, 2);
});

test('postgres: a fast-path append whose connection dies while it waits for the position lock fails, appends nothing, and the pool goes on with a new connection', async (t) => {
  const db = await ownDatabase(t);
  t.timeout(60_000); // a hang here (the waiter never found) fails this test, not the whole run
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => log.close());
  const holder = await connect(t, db.url);
  await holder.query('SELECT pg_advisory_lock(7402, 0)');
  const appending = log.append({ stream: 'killed', events: events(1) });
  // This database's waiter only: tests run in parallel, each in its own database.
  const waiting = "FROM pg_locks WHERE locktype = 'advisory' AND classid = 7402 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
  while ((await holder.query(`SELECT 1 ${waiting}`)).rowCount === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  await holder.query(`SELECT pg_terminate_backend(pid) ${waiting}`);
  await t.throwsAsync(appending);
  await holder.query('SELECT pg_advisory_unlock(7402, 0)');

  const [after] = await log.append({ stream: 'after', events: events(1) });
  t.is(after!.streamVersion, 0);
  t.deepEqual((await collect(log.readAll())).map((e) => e.stream), ['after']);
});

// append-streams.sql returns a row per request and the caller works out each event's position and
// version from it; the INSERT computes them on its own: the two must agree.
test('postgres: several appends in one fast-path statement report each event as a read of the log gives it', async (t) => {
  const log = await postgresLog(t);
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(2) });
  await log.append({ stream: 'build-2', expectedVersion: 'no_stream', events: events(1) });
  const requests: AppendRequest[] = [
    { stream: 'build-1', expectedVersion: 1, events: events(3) },
    { stream: 'build-3', expectedVersion: 'no_stream', events: events(1) },
    { stream: 'build-2', expectedVersion: 'stream_exists', events: events(2) },
    { stream: 'build-4', expectedVersion: 'any', events: events(2) },
  ];
  const results = await appendFast(log.pool, requests.map((request) => ({ request })));
  t.truthy(results, 'written by the fast path');
  const written = results!.flat();
  t.deepEqual(written.map((e) => [e.stream, e.streamVersion]), [
    ['build-1', 2], ['build-1', 3], ['build-1', 4], ['build-3', 0], ['build-2', 1], ['build-2', 2], ['build-4', 0], ['build-4', 1],
  ]);
  const read = (await collect(log.readAll())).slice(-written.length);
  t.deepEqual(written.map((e) => ({ id: e.id, stream: e.stream, version: e.streamVersion, position: e.globalPosition, at: e.recordedAt.getTime() })),
    read.map((e) => ({ id: e.id, stream: e.stream, version: e.streamVersion, position: e.globalPosition, at: e.recordedAt.getTime() })));
});

// append_events() returns its rows as text, recorded_at as epoch milliseconds, mapped by column
// position (append.ts): each event as a read of the log gives it, a retry's duplicates included.
test('postgres: an append through append_events() reports each event as a read of the log gives it, and its retry the same events as duplicates', async (t) => {
  const log = await postgresLog(t);
  const requests: AppendRequest[] = [
    { stream: 'namespace-1', expectedVersion: 'no_stream', events: events(2), claims: [{ name: 'stream', value: 'namespace-1' }, { name: 'namespace.name', value: 'a "quoted", {braced} \\ name' }] },
    { stream: 'namespace-2', expectedVersion: 'no_stream', events: events(1), preconditions: [{ kind: 'exists', stream: 'namespace-1', message: 'namespace 1 does not exist' }] },
  ];
  const written = await log.append(requests);
  const read = (await collect(log.readAll())).slice(-written.length);
  const view = (e: { id: string; stream: string; streamVersion: number; globalPosition: number; recordedAt: Date }) =>
    ({ id: e.id, stream: e.stream, version: e.streamVersion, position: e.globalPosition, at: e.recordedAt.getTime() });
  t.deepEqual(written.map(view), read.map(view));
  t.deepEqual(written.map((e) => e.duplicate), [false, false, false]);
  const retried = await log.append(requests.map((request) => ({ ...request, expectedVersion: 'any' as const })));
  t.deepEqual(retried.map(view), read.map(view));
  t.deepEqual(retried.map((e) => e.duplicate), [true, true, true]);
});

// Regression (found by a review): when the fast path wrote nothing (here: a retry, the id in the
// log), the fallback to append_events() serialized the events' data again, after an await: a
// caller that changed its object once it had called had its retry refused as a conflicting event
// (or, had it been new, another payload written than the one it gave).
test('postgres: an append sends its events as they were when it was called, also when the fast path falls back to append_events()', async (t) => {
  const log = await postgresLog(t);
  const event = { id: crypto.randomUUID(), type: 'NamespaceCreated', data: { namespace_id: 1, name: 'as called' } };
  await log.append({ stream: 'namespace-1', expectedVersion: 'no_stream', events: [event] });
  for (const expectedVersion of ['any', 0] as const) {
    const data = { ...event.data };
    const retry = log.append({ stream: 'namespace-1', expectedVersion, events: [{ ...event, data }] });
    data.name = 'changed after the call';
    t.deepEqual((await retry).map((e) => e.duplicate), [true], `expected version ${expectedVersion}`);
  }
  const two = [1, 2].map((n) => ({ id: crypto.randomUUID(), type: 'NamespaceCreated', data: { namespace_id: n, name: `batch ${n}` } }));
  await log.append({ stream: 'batch', expectedVersion: 'no_stream', events: two });
  const copies = two.map((e) => ({ ...e, data: { ...e.data } }));
  const retryTwo = log.append({ stream: 'batch', expectedVersion: 'any', events: copies });
  copies[1]!.data.name = 'changed after the call';
  t.deepEqual((await retryTwo).map((e) => e.duplicate), [true, true]);
  t.deepEqual((await collect(log.readAll())).map((e) => (e.data as { name: string }).name), ['as called', 'batch 1', 'batch 2']);
});

// Regression (found by a review): a log copied from another server (pg_dump and pg_restore,
// logical replication) keeps that server's transaction ids, which this one has not reached; the
// reader took them for appenders in flight and waited for ever, or, once this server's own appends
// came after them, read those and passed the copied events for good (a rebuild without them).
test('postgres: a read refuses events another server wrote, naming the first, rather than waiting for them or passing them', async (t) => {
  const db = await ownDatabase(t);
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  // As pg_restore writes them: the old server's transaction ids, far above this server's.
  await client.query(`INSERT INTO event_store.events (global_position, id, stream, stream_version, type, data, metadata, recorded_at, transaction_id)
    SELECT nextval('event_store.global_position_seq'), gen_random_uuid(), 'copied-' || n, 0, 'Copied', '{}', '{}', now(), (4000000000 + n)::text::xid8
    FROM generate_series(1, 3) n`);
  const log = createPostgresEventLog({ connectionString: db.url });
  t.teardown(() => log.close());
  const refused = { instanceOf: ForeignTransactionIdError, message: /^the event at position 1 has transaction id 4000000001, which this PostgreSQL server has not reached .*conda-store-events export/ };
  const waited = await t.throwsAsync(collect(log.readAll()), refused);
  t.is(waited!.position, 1);
  await log.append({ stream: 'local-1', events: events(1) });
  await t.throwsAsync(collect(log.readAll()), refused, 'passed over for the append after them, before');
  await t.throwsAsync(collect(log.readAll({ types: ['Copied'] })), refused);
  // A log of this server's own: nothing refused, whatever its gaps (an aborted append's position).
  const own = await postgresLog(t);
  await own.pool.query("SELECT nextval('event_store.global_position_seq')");
  await own.append({ stream: 'a', events: events(1) });
  await own.append({ stream: 'b', events: events(1) });
  t.deepEqual((await collect(own.readAll())).map((e) => e.globalPosition), [2, 3]);
});

/**
 * Runs `append` while another session holds `stream`'s lock, and returns once the append waits for
 * it: its session and its statement as the server shows them (pg_stat_activity, read from a third
 * session: a transaction sees it as it was at its first look), and `release` to let it go on. The
 * log runs its appends on a connection it keeps out of its pool (kept-connection.ts): the pool's
 * own sessions cannot tell which connection or statement an append used.
 */
async function waitingAtStreamLock<T>(t: ExecutionContext, url: string, stream: string, append: () => Promise<T>) {
  const blocker = await connect(t, url);
  await blocker.query('BEGIN');
  await blocker.query('SELECT pg_advisory_xact_lock(7401, hashtext($1))', [stream]);
  const outcome = append();
  outcome.catch(() => undefined);
  let waiting: { pid: number; query: string } | undefined;
  await waitUntil(async () => {
    [waiting] = (await withClient(url, (client) => client.query<{ pid: number; query: string }>(
      "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'"))).rows;
    return waiting !== undefined;
  }, 'the append to wait for its stream lock');
  return { ...waiting!, outcome, release: () => blocker.query('COMMIT') };
}

/**
 * Which one-event statement `append` runs (each is headed by its name, append.ts): the
 * known-version one (no lookup), the one that looks the version up, or another.
 */
async function statementOf<T>(t: ExecutionContext, url: string, stream: string, append: () => Promise<T>): Promise<{ statement: 'known' | 'lookup' | 'other'; outcome: Promise<T> }> {
  const { query, outcome, release } = await waitingAtStreamLock(t, url, stream, append);
  await release();
  const statement = query.startsWith('-- cse_append_known\n') ? 'known' : query.startsWith('-- cse_append_one\n') ? 'lookup' : 'other';
  return { statement, outcome };
}

/**
 * A log of one pooled connection on `url`, its connections open and idle: a new connection makes
 * a log forget the versions it saw (a restore may lie behind it), and one opened in the middle of
 * a test (for its first look for listeners, or a read) would turn a known version into a lookup.
 */
async function settledLog(t: ExecutionContext, url: string) {
  const log = createPostgresEventLog({ connectionString: url, poolSize: 1, idleTimeoutMs: 600_000 });
  t.teardown(() => log.close());
  await log.readStream('warm-up');
  await log.append({ stream: 'warm-up', events: events(1) });
  // All open, and all but the one kept for appends back in the pool.
  await waitUntil(() => log.pool.idleCount === log.pool.totalCount - 1, "the log's connections to open");
  return log;
}

test('postgres: an append that expects the version this process saw skips the lookup; when another process appended since, it is refused with the real version and writes nothing', async (t) => {
  const db = await ownDatabase(t);
  const mine = await settledLog(t, db.url);
  const other = await settledLog(t, db.url);

  await mine.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  const second = await statementOf(t, db.url, 'build-1', () => mine.append({ stream: 'build-1', expectedVersion: 0, events: events(1) }));
  t.is(second.statement, 'known', 'version 0 was known: no lookup');
  await second.outcome;

  // Another process moves the stream on: this one still remembers version 1.
  await other.append({ stream: 'build-1', expectedVersion: 1, events: events(1) });
  const refused = events(1);
  const error = await t.throwsAsync(mine.append({ stream: 'build-1', expectedVersion: 1, events: refused }), { instanceOf: WrongExpectedVersionError });
  t.is(error!.actual, 2);
  t.is(error!.expected, 1);

  // The refusal told this process the real version: the next append goes without a lookup again.
  const next = await statementOf(t, db.url, 'build-1', () => mine.append({ stream: 'build-1', expectedVersion: 2, events: events(1) }));
  t.is(next.statement, 'known');
  t.is((await next.outcome)[0]!.streamVersion, 3);
  const stored = await mine.readStream('build-1');
  t.deepEqual(stored.map((e) => e.streamVersion), [0, 1, 2, 3]);
  t.false(stored.some((e) => e.id === refused[0]!.id));

  // A version other than the one known is looked up: written when it holds (another process
  // moved the stream on), refused as always when it does not (no gap).
  await other.append({ stream: 'build-1', expectedVersion: 3, events: events(1) });
  const above = await statementOf(t, db.url, 'build-1', () => mine.append({ stream: 'build-1', expectedVersion: 4, events: events(1) }));
  t.is(above.statement, 'lookup');
  t.is((await above.outcome)[0]!.streamVersion, 5);
  await t.throwsAsync(mine.append({ stream: 'build-1', expectedVersion: 7, events: events(1) }), { instanceOf: WrongExpectedVersionError });
  t.deepEqual((await mine.readStream('build-1')).map((e) => e.streamVersion), [0, 1, 2, 3, 4, 5]);
});

// Found in review: the version append_events() reports for a request counts the events of the
// call's earlier requests of the same stream, which its refusal rolled back.
test('postgres: a refused call of several requests of one stream leaves no version that was rolled back to skip the lookup with', async (t) => {
  const log = await postgresLog(t);
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  const moved = await t.throwsAsync(log.append([
    { stream: 'build-1', expectedVersion: 0, events: events(1) },
    { stream: 'build-1', expectedVersion: 5, events: events(1) },
  ]), { instanceOf: WrongExpectedVersionError });
  t.is(moved!.actual, 1, 'counting the first request\'s event, rolled back');
  const refused = await t.throwsAsync(log.append({ stream: 'build-1', expectedVersion: 1, events: events(1) }), { instanceOf: WrongExpectedVersionError });
  t.is(refused!.actual, 0);
  t.deepEqual((await log.readStream('build-1')).map((e) => e.streamVersion), [0]);

  await t.throwsAsync(log.append([
    { stream: 'build-2', expectedVersion: 'any', events: events(1) },
    { stream: 'build-2', expectedVersion: 'no_stream', events: events(1) },
  ]), { instanceOf: WrongExpectedVersionError });
  const none = await t.throwsAsync(log.append({ stream: 'build-2', expectedVersion: 0, events: events(1) }), { instanceOf: WrongExpectedVersionError });
  t.is(none!.actual, 'no_stream');
  t.deepEqual(await log.readStream('build-2'), []);
});

test('postgres: an append on the known version waits for another session\'s append in flight: refused if it commits, written if it aborts; a retried event is still a duplicate', async (t) => {
  const db = await ownDatabase(t);
  const log = await settledLog(t, db.url);
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  const other = await connect(t, db.url);
  const inFlight = async (outcome: 'COMMIT' | 'ROLLBACK', expectedVersion: number) => {
    await other.query('BEGIN');
    await other.query(appendPaths['fast path']({ stream: 'build-1', expectedVersion, events: events(1) }));
    const appending = log.append({ stream: 'build-1', expectedVersion, events: events(1) });
    appending.catch(() => undefined);
    // The log's append waits for the other transaction's version (its unique key), after the stream lock.
    await waitUntil(async () => (await other.query("SELECT 1 FROM pg_locks WHERE NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")).rowCount! > 0, 'the append to wait');
    // The statement that waits, as the server shows it (from a session outside any transaction).
    const { rows: [waiting] } = await withClient(db.url, (client) => client.query<{ query: string }>(
      "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"));
    await other.query(outcome);
    return { appending, known: waiting!.query.startsWith('-- cse_append_known\n') };
  };
  const committed = await inFlight('COMMIT', 0);
  t.true(committed.known);
  const error = await t.throwsAsync(committed.appending, { instanceOf: WrongExpectedVersionError });
  t.is(error!.actual, 1);
  const aborted = await inFlight('ROLLBACK', 1);
  t.true(aborted.known, 'the refusal told the log version 1: no lookup');
  const [written] = await aborted.appending;
  t.is(written!.streamVersion, 2);

  // Another session appends an event at version 3; the log retries that very event on its known version 2.
  const retried = events(1);
  await other.query(appendPaths['fast path']({ stream: 'build-1', expectedVersion: 2, events: retried }));
  const [again] = await log.append({ stream: 'build-1', expectedVersion: 2, events: retried });
  t.true(again!.duplicate);
  t.is(again!.streamVersion, 3);
  t.deepEqual((await log.readStream('build-1')).map((e) => e.streamVersion), [0, 1, 2, 3]);
});

/**
 * Takes `stream` back to before `version`, as restoring an older backup (or promoting a replica
 * that is behind) would: the append-only trigger is set aside for it, as a restore bypasses it.
 */
async function rewind(url: string, stream: string, version: number): Promise<void> {
  await withClient(url, async (client) => {
    await client.query('BEGIN; ALTER TABLE event_store.events DISABLE TRIGGER events_append_only');
    await client.query('DELETE FROM event_store.events WHERE stream = $1 AND stream_version >= $2', [stream, version]);
    await client.query('ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_append_only; COMMIT');
  });
}

/**
 * With the server taken back to before version 1 of build-1 (as a restore would), the log's append
 * on version 1, which it saw, is refused with the real version, and no gap is written.
 */
async function refusedAfterRewind(t: ExecutionContext, log: EventLog, url: string): Promise<void> {
  await rewind(url, 'build-1', 1);
  const error = await t.throwsAsync(log.append({ stream: 'build-1', expectedVersion: 1, events: events(1) }), { instanceOf: WrongExpectedVersionError });
  t.is(error!.actual, 0);
  t.deepEqual((await log.readStream('build-1')).map((e) => e.streamVersion), [0]);
}

/** A log of one pooled connection on a database of its own, with the errors it reports (lost connections) kept. */
async function logKeepingErrors(t: ExecutionContext) {
  const db = await ownDatabase(t);
  const errors: unknown[] = [];
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1, onError: (error) => errors.push(error) });
  t.teardown(() => log.close());
  return { db, log, errors };
}

test('postgres: after a lost connection the log forgets the versions it saw: a server restored from an older backup gets no gap', async (t) => {
  const { db, log, errors } = await logKeepingErrors(t);
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  await log.append({ stream: 'build-1', expectedVersion: 0, events: events(1) });
  const { rows: [backend] } = await log.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  await withClient(db.url, (client) => client.query('SELECT pg_terminate_backend($1)', [backend!.pid]));
  await waitUntil(() => errors.length > 0, 'the pool reports the lost connection');
  await refusedAfterRewind(t, log, db.url);
});

test('postgres: a new connection makes the log forget the versions it saw (a process idle through a restore hears of no error)', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 10, idleTimeoutMs: 100 });
  t.teardown(() => log.close());
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  await log.append({ stream: 'build-1', expectedVersion: 0, events: events(1) });
  // Idle, the connections close (the one kept for appends too), and the next append opens a new
  // one; meanwhile the server went back to before version 1 without a connection of the log seeing it.
  await waitUntil(() => log.pool.totalCount === 0, 'the idle connections to close');
  await refusedAfterRewind(t, log, db.url);
});

// The log keeps a connection out of its pool for appends (kept-connection.ts): sized to the
// option alone, a pool of one would leave a reader waiting for ever beside it.
test('postgres: a pool size or idle timeout that is not a positive integer is refused by name', (t) => {
  const connectionString = urlFor('postgres');
  t.throws(() => createPostgresEventLog({ connectionString, poolSize: 0 }), { instanceOf: RangeError, message: 'poolSize must be a positive integer, got 0' });
  t.throws(() => createPostgresEventLog({ connectionString, idleTimeoutMs: 2.5 }), { instanceOf: RangeError, message: 'idleTimeoutMs must be a positive integer, got 2.5' });
  // Found in review: Node.js runs a longer timer after 1 ms, and the kept connection's idle check spun.
  t.throws(() => createPostgresEventLog({ connectionString, idleTimeoutMs: 2 ** 31 }), { instanceOf: RangeError, message: 'idleTimeoutMs must be at most 2147483647, got 2147483648' });
});

// Regression (found in review): claim_keys() inserted an append's keys in the order its caller
// listed them; two appends claiming the same keys in two orders each held one and waited for the
// other, until PostgreSQL's deadlock detector failed one with a raw 40P01 rather than the
// DuplicateKeyError it was due. Every append now inserts its keys in one order, (name, value).
test('postgres: appends claim their keys in one order, so two that claim the same keys in two orders do not deadlock', async (t) => {
  const log = await postgresLog(t);
  // A holds key "a" (its append in flight), and will take "b" next, in key order.
  const a = await connect(t, log.url);
  await a.query('BEGIN ISOLATION LEVEL READ COMMITTED');
  await a.query(appendPaths['append_events()']({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'a' }] }));
  // B lists "b" before "a": in list order, it took "b" and then waited for A's "a".
  const appending = log.append({ stream: 'namespace-2', events: events(1), claims: [{ name: 'namespace.name', value: 'b' }, { name: 'namespace.name', value: 'a' }] });
  void appending.catch(() => undefined); // awaited below
  const watcher = await connect(t, log.url);
  await untilOneWaits(watcher, 'B to wait for A');
  // A takes "b": it waited for B (which held "b"), and one of the two was failed as a deadlock.
  await a.query("INSERT INTO event_store.keys (name, value, stream) VALUES ('namespace.name', 'b', 'namespace-1')");
  await a.query('COMMIT');
  await t.throwsAsync(appending, { instanceOf: DuplicateKeyError, message: /^duplicate namespace\.name: "[ab]" is already taken by namespace-1$/ });
  t.deepEqual((await log.readStream('namespace-2')).length, 0);
});

// Found in review: close() waited for the append queue only, and pg-pool serves no waiter once it
// ends, so an append with keys still waiting for a connection when the pool ended never settled.
test('postgres: close waits for an append outside the queue that still waits for a connection; it is written', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => log.close());
  // Every connection the pool may open (one more than poolSize), held.
  const held = [await log.pool.connect(), await log.pool.connect()];
  const appending = log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'late' }] });
  await waitUntil(() => log.pool.waitingCount === 1, 'the append to wait for a connection');
  const closing = log.close();
  // close() goes as far as it can within this turn of the event loop (nothing else it waits for is
  // pending): before the fix, to the pool's end.
  await new Promise((resolve) => setImmediate(resolve));
  for (const client of held) client.release();
  // Before the fix the append never settled: a bound, so that the test fails rather than hangs.
  let bound: NodeJS.Timeout | undefined;
  const [written] = await Promise.race([appending, new Promise<never>((_, reject) => (bound = setTimeout(() => reject(new Error('the append never settled')), 30_000)))]);
  clearTimeout(bound);
  t.is(written!.streamVersion, 0);
  await closing;
  t.is(log.pool.totalCount, 0);
});

test('postgres: with a pool of one, reads go on beside the connection kept for appends', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => log.close());
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  t.deepEqual((await log.readStream('build-1')).map((e) => e.streamVersion), [0]);
  t.is((await collect(log.readAll())).length, 1);
  await log.append({ stream: 'build-1', expectedVersion: 0, events: events(1) });
  t.deepEqual((await log.readStream('build-1')).map((e) => e.streamVersion), [0, 1]);
});

test('postgres: a lost listening connection also makes the log forget the versions it saw', async (t) => {
  const { db, log, errors } = await logKeepingErrors(t);
  await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(1) });
  t.is(log.knownStreams(), 1);
  // A live subscription with nothing to read waits on the log's listening connection.
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const subscribing = (async () => {
    for await (const batch of log.subscribe({ signal: controller.signal })) void batch;
  })().catch(() => undefined);
  const listenerPid = async () => (await log.pool.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")).rows[0]?.pid;
  await waitUntil(async () => (await listenerPid()) !== undefined, 'the log to listen');
  const { rows: [pool] } = await log.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  await withClient(db.url, async (client) => client.query('SELECT pg_terminate_backend($1)', [await listenerPid()]));
  await waitUntil(() => errors.length > 0, 'the listener reports the lost connection');
  t.is(log.knownStreams(), 0, 'the versions are forgotten');
  const { rows: [still] } = await log.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  t.is(still!.pid, pool!.pid, 'the pool kept its connection: the listener alone made the log forget');
  controller.abort();
  await subscribing;
});

// pg-pool's pool.query closes a connection on any error: every refused append cost a new
// connection (a producer that often loses races paid a reconnect each time).
test('postgres: a refused append gives its connection back; a canceled or failed one is closed', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => log.close());
  const sessionOf = (stream: string, append: () => Promise<unknown>) => waitingAtStreamLock(t, db.url, stream, append);
  const appendOnce = async (stream: string) => {
    const session = await sessionOf(stream, () => log.append({ stream, events: events(1) }));
    await session.release();
    await session.outcome;
    return session.pid;
  };
  const sessionGone = (pid: number) => waitUntil(async () => (await withClient(db.url, (client) =>
    client.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]))).rowCount === 0, `session ${pid} to end`);

  await log.append({ stream: 'refusals', events: events(1) });
  const pid = await appendOnce('refusals');
  await t.throwsAsync(log.append({ stream: 'refusals', expectedVersion: 5, events: events(1) }), { instanceOf: WrongExpectedVersionError });
  await log.append({ stream: 'claims', events: events(1), claims: [{ name: 'namespace.name', value: 'taken' }] });
  await t.throwsAsync(log.append({ stream: 'other', events: events(1), claims: [{ name: 'namespace.name', value: 'taken' }] }), { instanceOf: DuplicateKeyError });
  await t.throwsAsync(log.append({ stream: 'child', events: events(1), preconditions: [{ kind: 'exists', stream: 'nowhere', message: 'no parent' }] }), { instanceOf: PreconditionFailedError });
  // Data the database cannot store (a NUL character in JSON: class 22) is a refusal too.
  await t.throwsAsync(log.append({ stream: 'nul', events: [{ id: randomUUID(), type: 'Tested', data: { text: 'a\u0000b' } }], claims: [{ name: 'namespace.name', value: 'nul' }] }), { message: /unsupported Unicode escape sequence|\\u0000/ });
  t.is(await appendOnce('refusals'), pid, 'the same connection after four refusals');

  // A statement canceled may have held the position lock: its connection is closed.
  const appendSlowly = async () => await log.append({ stream: 'slow', events: events(1), claims: [{ name: 'namespace.name', value: 'slow' }] });
  const slow = await sessionOf('slow', appendSlowly);
  await withAdmin((admin) => admin.query('SELECT pg_cancel_backend($1)', [slow.pid]));
  const canceled = await t.throwsAsync(slow.outcome);
  t.regex(canceled.message, /canceling statement/);
  // Passed on as it is, with a stack that leads back to the caller, not to the socket's reader.
  t.regex(canceled.stack ?? '', /appendSlowly/);
  await slow.release();
  await sessionGone(slow.pid);
  const afterCancel = await appendOnce('refusals');
  t.not(afterCancel, slow.pid, 'a new connection after a canceled statement');

  // A connection that fails under an append (terminated while it waits for a stream lock) is
  // not handed out again: the next append runs on a new one.
  const failing = await sessionOf('claims', () => log.append({ stream: 'claims', events: events(1), claims: [{ name: 'namespace.name', value: 'x' }] }));
  await withAdmin((admin) => admin.query('SELECT pg_terminate_backend($1)', [failing.pid]));
  await t.throwsAsync(failing.outcome);
  await failing.release();
  const retried = await sessionOf('claims', () => log.append({ stream: 'claims', events: events(1), claims: [{ name: 'namespace.name', value: 'x' }] }));
  t.not(retried.pid, failing.pid);
  await retried.release();
  await retried.outcome;
});

/** The subplans of an EXPLAIN that read event_store.keys: whether hashed, and their lines. */
function subplansReadingKeys(plan: string): { hashed: boolean; text: string }[] {
  const lines = plan.split('\n');
  const hashed = new Set([...plan.matchAll(/hashed SubPlan (\d+)/g)].map((match) => match[1]!));
  return lines.flatMap((line, start) => {
    const n = /^\s*SubPlan (\d+)$/.exec(line)?.[1];
    if (!n) return [];
    const indent = line.search(/\S/);
    const end = lines.findIndex((other, i) => i > start && other.search(/\S/) <= indent);
    const text = lines.slice(start + 1, end === -1 ? undefined : end).join('\n');
    return / on keys /.test(text) ? [{ hashed: hashed.has(n), text }] : [];
  });
}

// Regression: a session that planned the preconditions while event_store.keys was small (a new
// log, or statistics taken then) hashed every aggregate's key on every append from then on, in
// time growing with the log (migration 20260101000900_precondition_index_probes). The plan is
// generic, as plpgsql caches it, with append_events()'s enable_seqscan off. Each condition must look
// its key up on its own, through the index.
test('postgres: preconditions probe their keys through the index, whatever the statistics of the keys table (no hashed subplan)', async (t) => {
  const db = await ownDatabase(t);
  const client = await connect(t, db.url);
  // A new log: a few keys, no statistics yet. The plan a session makes now is the one it keeps.
  await client.query(`INSERT INTO event_store.keys (name, value, stream, parent)
                      VALUES ('stream', 'namespace-1', 'namespace-1', NULL), ('stream', 'environment-7', 'environment-7', 'namespace-1')`);
  await client.query('SET plan_cache_mode = force_generic_plan');
  await client.query('SET enable_seqscan = off');
  /** EXECUTE of the prepared call, its arguments as literals (test constants here). */
  const execute = (kind: string, arg: string | null, subject: string) =>
    `EXECUTE failed(${['{0}', '{1}', 1, 1, '{}', '{}', '{}', '{1}', `{${subject}}`, `{${kind}}`, `{${arg ?? 'NULL'}}`, '{message}'].map((value) => `'${value}'`).join(', ')})`;
  for (const statistics of ['none yet', 'taken while small']) {
    if (statistics !== 'none yet') await client.query('ANALYZE event_store.keys');
    await client.query('DEALLOCATE ALL');
    await client.query(`PREPARE failed(int[], int[], int, int, int[], text[], text[], int[], text[], text[], text[], text[]) AS
                        SELECT * FROM event_store.failed_precondition($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`);
    // One generic plan holds the subplans of every kind of condition.
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${execute('exists', null, 'environment-7')}`);
    const plan = rows.map((row) => row['QUERY PLAN']).join('\n');
    const subplans = subplansReadingKeys(plan);
    t.true(subplans.length >= 4, `statistics ${statistics}: a lookup of keys for each kind of condition\n${plan}`);
    t.deepEqual(subplans.filter((subplan) => subplan.hashed || /Seq Scan/.test(subplan.text)), [], `statistics ${statistics}: no hash or scan of every key\n${plan}`);
  }
  // The same answers: each kind of condition, for a subject for which it holds and one for which it fails.
  const cases = [
    ['exists', null, 'environment-7', 'environment-0'],
    ['key', 'stream', 'environment-7', 'environment-0'],
    ['child_of', 'namespace-1', 'environment-7', 'environment-0'],
    ['no_children', null, 'environment-7', 'namespace-1'],
  ] as const;
  for (const [kind, arg, holds, fails] of cases) {
    const failed = async (subject: string) => (await client.query<{ kind: string }>(execute(kind, arg, subject))).rows[0]?.kind;
    t.is(await failed(holds), undefined, `${kind} holds for ${holds}`);
    t.is(await failed(fails), kind, `${kind} fails for ${fails}`);
  }
});

// ---------------------------------------------------------------------------------------------
// A live subscriber takes this process's own appends from memory (recent-appends.ts).

/** Data whose key order a jsonb column changes: keys of several lengths, non-ASCII, integer-like, "__proto__". */
const unorderedData = () =>
  JSON.parse('{"zeta": 1, "b": {"yy": [3, {"é": 1, "e": 2, "ab": null}], "x": true}, "10": "ten", "2": "two", "aa": 0.1, "__proto__": {"k": 1e21}, "ü": "ü", "c": "\\u2028"}') as Record<string, unknown>;

/** Reads a live subscription into `received` until it has read to `target()` (set once the writes are done). */
function readLive(log: EventLog, received: RecordedEvent[], options: { types?: string[]; onBatch?: (batch: LogBatch) => Promise<void> } = {}) {
  const controller = new AbortController();
  let [position, target] = [0, Infinity];
  const reading = (async () => {
    for await (const batch of log.subscribe({ types: options.types, signal: controller.signal })) {
      received.push(...batch);
      position = batch.position;
      if (position >= target) return;
      await options.onBatch?.(batch);
    }
  })();
  return {
    async until(head: number) {
      target = head;
      if (position >= target) controller.abort(); // read to the end already: stop waiting for more
      await reading;
    },
    stop: () => controller.abort(),
  };
}

/**
 * A live subscriber (readLive) that can be held: the batch after `holdNext()` waits in its
 * onBatch until released, so that appends come meanwhile; `afterRelease`, when set, runs in the
 * batch after that one, between the subscriber's take and what it does next.
 */
function holdableReader(t: ExecutionContext, log: EventLog) {
  let hold: { entered: () => void; released: Promise<void> } | undefined;
  const received: RecordedEvent[] = [];
  const control = {
    received,
    afterRelease: undefined as (() => Promise<unknown>) | undefined,
    /** Holds the next batch: `entered` once it is held, `release()` lets it go on. */
    holdNext() {
      let release!: () => void;
      const entered = new Promise<void>((resolve) => (hold = { entered: resolve, released: new Promise<void>((done) => (release = done)) }));
      return { entered, release: () => release() };
    },
    reader: readLive(log, received, {
      onBatch: async () => {
        const current = hold;
        hold = undefined;
        current?.entered();
        await current?.released;
        if (current) return;
        const next = control.afterRelease;
        control.afterRelease = undefined;
        await next?.();
      },
    }),
  };
  t.teardown(() => control.reader.stop());
  return control;
}

test('postgres: a live subscriber takes this process\'s own appends without reading them back, each event exactly as a read of the log gives it', async (t) => {
  const log = await postgresLog(t);
  const all: RecordedEvent[] = [];
  const some: RecordedEvent[] = [];
  const readers = [readLive(log, all), readLive(log, some, { types: ['Tested'] })];
  t.teardown(() => readers.forEach((reader) => reader.stop()));
  // Both subscribers live before the appends under test (a subscriber that had not started yet,
  // under the load of the whole suite, read them back from the log, and none was taken).
  await log.append({ stream: 'warm', events: [{ id: randomUUID(), type: 'Tested', data: unorderedData() }] });
  await waitUntil(() => all.length === 1 && some.length === 1, 'both subscribers to be live');
  // One event per append (the fast path), several in one stream, several streams with keys
  // (append_events); ids spelt as PostgreSQL does not write them.
  const upper = randomUUID().toUpperCase();
  const [first] = await log.append({ stream: 'one', events: [{ id: upper, type: 'Tested', data: unorderedData() }] });
  t.is(first!.id, upper.toLowerCase(), 'the id as the log holds it, whichever path wrote it');
  await log.append({ stream: 'one', events: [{ id: randomUUID(), type: 'Tested', data: unorderedData(), metadata: unorderedData() }, ...events(2, 'Other')] });
  await log.append([
    { stream: 'two', events: [{ id: `{${randomUUID().toUpperCase()}}`, type: 'Tested', data: { list: [unorderedData()] } }], claims: [{ name: 'test.key', value: 'a' }] },
    { stream: 'three', events: events(1) },
  ]);
  const head = await log.headPosition();
  await Promise.all(readers.map((reader) => reader.until(head)));
  const fromLog = await collect(log.readAll());
  t.is(all.length, 7);
  // Key order included: a json column built from either gives the same text.
  t.is(JSON.stringify(all), JSON.stringify(fromLog));
  t.deepEqual(all, fromLog);
  t.deepEqual(some, fromLog.filter((event) => event.type === 'Tested'));
  t.true(Object.hasOwn(all[0]!.data, '__proto__'), '"__proto__" stays a key, as JSON.parse makes it');
  t.true(log.ownAppendsTaken() > 0, 'taken from the appends, not read back');
  // Each subscriber has objects of its own, as a read gives each reader.
  all[0]!.data.zeta = 'changed';
  t.is(some[0]!.data.zeta, 1);
});

// Regression (found in review): a wake-up that memory could not answer (another process's append,
// or one of this process's not kept) was counted before the subscriber took its own events, and the
// subscriber then waited for its poll: a second, or here forever, since this log polls every ten minutes.
test('postgres: after taking its own appends, a subscriber reads the log for what memory does not hold (an event too large to keep, another process\'s append, an own event past a gap)', async (t) => {
  const db = await ownDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, pollIntervalMs: 600_000, keepOwnAppends: { maxBytes: 4000 } });
  const other = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => Promise.all([log.close(), other.close()]).then(() => undefined));
  const big = (): EventInput => ({ id: randomUUID(), type: 'Tested', data: { text: 'x'.repeat(3000) } });
  // The subscriber holds its next batch until released: the appends of a phase come meanwhile.
  const subscriber = holdableReader(t, log);
  const { received, reader } = subscriber;
  const whileHeld = async (writes: () => Promise<unknown>) => {
    const { entered, release } = subscriber.holdNext();
    await log.append({ stream: 'own', events: events(1) });
    await entered;
    await writes();
    release();
    const head = await log.headPosition();
    // Without the fix, the subscriber waited for its poll here (ten minutes).
    await waitUntil(async () => received.at(-1)?.globalPosition === head, `the subscriber to read to ${head}`, { timeoutMs: 20_000 });
  };
  await whileHeld(async () => {
    await log.append({ stream: 'own', events: events(1) }); // kept
    await log.append({ stream: 'own', events: [big()] }); // not kept: too large
    await log.append({ stream: 'own', events: events(1) }); // kept
  });
  const listener = await connect(t, db.url);
  await listener.query(LISTEN_AS_A_LISTENER);
  await whileHeld(async () => {
    await log.append({ stream: 'own', events: events(1) });
    const notified = new Promise((resolve) => listener.once('notification', resolve));
    await other.append({ stream: 'other', events: events(1) }); // another process's
    await notified;
    await log.append({ stream: 'own', events: events(1) });
  });
  // Regression (a review of the eighth session of 2026-12-07): an own event kept past a gap in the
  // run (a position left unused) had its wake-up counted before the take, and waited for the poll.
  const gaps: number[] = [];
  const pastAGap = async () => {
    await log.append({ stream: 'own', events: events(1) }); // kept
    gaps.push(Number((await listener.query<{ n: string }>(`SELECT nextval('event_store.global_position_seq') AS n`)).rows[0]!.n)); // left unused
    await log.append({ stream: 'own', events: events(1) }); // kept, past the gap
  };
  await whileHeld(pastAGap);
  // The same, the kept events forgotten (a new connection of the log) between the subscriber's
  // take and its look past the gap: a review of the same session found it waiting for its poll.
  let connected = false;
  log.pool.once('connect', () => (connected = true));
  subscriber.afterRelease = () => Promise.all(Array.from({ length: log.pool.totalCount + 1 }, () => log.pool.query('SELECT pg_sleep(0.05)')));
  await whileHeld(pastAGap);
  t.true(connected, 'the log made a new connection between the take and the look past the gap');
  const head = await log.headPosition();
  await reader.until(head);
  t.deepEqual(received.map((event) => event.globalPosition), Array.from({ length: head }, (_, i) => i + 1).filter((position) => !gaps.includes(position)));
});

// Regression (a review of the eighth session of 2026-12-07): the events kept for subscribers
// outlived a lost connection, which may be a server restored from a backup or a replica promoted
// that never had them: a subscriber was handed them, and a projection past them would skip the
// events that took their positions again.
test('postgres: after its connections are lost, the log hands its subscribers what the server has at a position, not the events it kept there', async (t) => {
  const db = await ownDatabase(t);
  const errors: unknown[] = [];
  const log = createPostgresEventLog({ connectionString: db.url, pollIntervalMs: 600_000, onError: (error) => void errors.push(error) });
  const other = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => Promise.all([log.close(), other.close()]).then(() => undefined));
  const subscriber = holdableReader(t, log);
  const { received, reader } = subscriber;
  const { entered, release } = subscriber.holdNext();
  await log.append({ stream: 'own', events: events(1) });
  await entered;
  const [kept] = await log.append({ stream: 'own', events: events(3) });
  const from = kept!.globalPosition;
  // The server "goes back" to before them: every session of the log ends, the events go, and
  // their positions are handed out again, to another process's events.
  const admin = await connect(t, db.url);
  await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`);
  await waitUntil(() => errors.length > 0, 'the log to hear of its lost connections');
  await admin.query(`
    ALTER TABLE event_store.events DISABLE TRIGGER events_append_only;
    DELETE FROM event_store.events WHERE global_position >= ${from};
    ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_append_only;
    SELECT setval('event_store.global_position_seq', ${from - 1})`);
  const theirs = await other.append({ stream: 'other', events: events(3) });
  t.deepEqual(theirs.map((event) => event.globalPosition), [from, from + 1, from + 2]);
  release();
  await reader.until(from + 2);
  t.deepEqual(received.slice(-3).map((event) => event.id), theirs.map((event) => event.id));
});

// Regression (a review of the eighth session of 2026-12-07): a listening connection that went
// silent after its connect and before its LISTEN returned held every subscriber of the process
// in its wait, with no poll, until TCP gave up (a quarter of an hour).
test('postgres: a listener whose set-up goes unanswered holds no wait past its time, is dropped, and a later one listens', async (t) => {
  const { db, proxy, errors, wakeups } = await wakeupsThroughProxy(t, 300);
  proxy.holdAfterFirstWrite();
  const signal = AbortSignal.timeout(60_000);
  await wakeups.wait(200, signal);
  t.false(signal.aborted, 'the wait returned in its time, not at the abort');
  await waitUntil(() => errors.some((message) => /timeout/i.test(message)), 'the set-up to give up');
  proxy.restore();
  await listensAgainAndHears(t, wakeups, db.url);
});

test('postgres: a subscriber takes its own appends only where they follow on: an append in flight below them holds it back; other processes\' appends interleaved arrive too, every position once and in order', async (t) => {
  const log = await postgresLog(t);
  const others = Array.from({ length: 3 }, () => createPostgresEventLog({ connectionString: log.url, poolSize: 1 }));
  t.teardown(() => Promise.all(others.map((other) => other.close())).then(() => undefined));
  const controller = new AbortController();
  t.teardown(() => controller.abort());
  const positions: number[] = [];
  let [position, target] = [0, Infinity];
  const reading = (async () => {
    for await (const batch of log.subscribe({ batchSize: 5, signal: controller.signal })) {
      positions.push(...batch.map((e) => e.globalPosition));
      position = batch.position;
      if (position >= target) return;
    }
  })();
  // Position 1 in flight on a connection of its own; position 2 is this process's, in memory.
  const appender = await connect(t, log.url);
  await appender.query('BEGIN');
  await appender.query(APPEND_SQL, appendParameters([{ stream: 'in-flight', events: events(1) }]));
  const [own] = await log.append({ stream: 'own', events: events(1) });
  t.is(own!.globalPosition, 2);
  await appender.query('COMMIT');
  // Then this process and three others append at once.
  const writers = [log, ...others];
  await Promise.all(writers.map(async (writer, w) => {
    for (let i = 0; i < 30; i++) await writer.append({ stream: `writer-${w}`, events: events(1 + (i % 3)) });
  }));
  target = await log.headPosition();
  if (position >= target) controller.abort();
  await reading;
  t.deepEqual(positions, Array.from({ length: target }, (_, i) => i + 1));
  t.true(log.ownAppendsTaken() > 0);
});

test('postgres: object keys in jsonb\'s order, as PostgreSQL orders them (byte length, then bytes; multi-byte and astral keys too)', async (t) => {
  const keys = ['b', 'a', 'ab', 'é', 'ÿ', 'ä', '€', 'abc', '😀', 'abcd', '\u{10FFFF}', '', 'Z', '0', '10', '9', 'aé', 'éa', 'ﬀ', 'ａ'];
  const value = { nested: [Object.fromEntries(keys.map((key, i) => [key, i]))], ...Object.fromEntries([...keys].reverse().map((key, i) => [key, { [key]: i }])) };
  const { rows: [row] } = await withClient(urlFor('postgres'), (client) => client.query<{ text: string }>('SELECT $1::jsonb::text AS text', [JSON.stringify(value)]));
  t.is(JSON.stringify(inJsonbOrder(JSON.parse(JSON.stringify(value)))), JSON.stringify(JSON.parse(row!.text)));
});

test('recent appends: kept only while a live subscriber is there, only the latest ones, handed over as unbroken runs', (t) => {
  const recent = createRecentAppends({ maxEvents: 4 });
  const appendedAt = (position: number, type = 'A') => ({
    requests: [{ stream: `s-${position}`, events: [{ id: `id-${position}`, type, data: { n: position } }] }],
    appended: [{ id: `id-${position}`, stream: `s-${position}`, streamVersion: 0, globalPosition: position, recordedAt: new Date(0), duplicate: false }],
  });
  const add = (position: number, type?: string) => {
    const { requests, appended } = appendedAt(position, type);
    recent.add(appended, requests, eventJson(requests));
  };
  add(1);
  t.false(recent.has(1), 'nothing kept without a live subscriber');
  recent.subscriber(true);
  for (const position of [1, 2, 3, 5, 6]) add(position, position === 3 ? 'B' : 'A');
  t.false(recent.has(1), 'the oldest went out beyond the capacity');
  t.is(recent.take(1, 10), undefined);
  const run = recent.take(2, 10)!;
  t.deepEqual(run.map((e) => e.globalPosition), [2, 3]);
  t.is(run.position, 3, 'the run stops at the first position not kept');
  const filtered = recent.take(2, 10, ['B'])!;
  t.deepEqual(filtered.map((e) => e.globalPosition), [3]);
  t.is(filtered.position, 3);
  t.is(recent.take(5, 1)!.position, 5, 'at most the limit');
  const duplicate = appendedAt(7);
  recent.add([{ ...duplicate.appended[0]!, duplicate: true }], duplicate.requests, eventJson(duplicate.requests));
  t.false(recent.has(7), 'a duplicate is not a new event');
  recent.subscriber(false);
  t.false(recent.has(5), 'dropped when the last subscriber stops');

  // A memory budget too: the oldest go first; an event larger than the whole budget is not kept.
  const small = createRecentAppends({ maxBytes: 2 * 100 });
  small.subscriber(true);
  const sized = (position: number, length: number) => {
    const requests = [{ stream: `s-${position}`, events: [{ id: `id-${position}`, type: 'A', data: { text: 'x'.repeat(length) } }] }];
    small.add([{ id: `id-${position}`, stream: `s-${position}`, streamVersion: 0, globalPosition: position, recordedAt: new Date(0), duplicate: false }], requests, eventJson(requests));
  };
  sized(1, 20);
  sized(2, 20);
  t.true(small.has(1) && small.has(2));
  sized(3, 30);
  t.deepEqual([1, 2, 3].map((p) => small.has(p)), [false, true, true], 'the oldest made room');
  sized(4, 200);
  t.false(small.has(4), 'larger than the whole budget');
  t.true(small.has(2) && small.has(3), 'the others stay');
  t.is(small.take(4, 10), undefined, 'its reader goes to the log');
});

// ---------------------------------------------------------------------------------------------
// The README's library example, run as a user would run it

test('the README library example runs against a migrated database: refusals, versions, the projected row', async (t) => {
  const example = fs.readFileSync(path.join(root, 'test', 'examples', 'library.ts'), 'utf8');
  const code = example.slice(example.indexOf("import { randomUUID } from 'node:crypto';"));
  t.true(fs.readFileSync(path.join(root, 'README.md'), 'utf8').includes(code), 'README.md quotes test/examples/library.ts verbatim');

  const db = await freshDatabase(t);
  const run = await waitForExit(spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test', 'examples', 'library.ts')], { cwd: root, env: { ...process.env, DATABASE_URL: db.url } }));
  t.is(run.code, 0, run.stderr);
  t.is(run.stdout, [
    'refused: duplicate namespace.name: "analytics" is already taken by namespace-1',
    'refused: wrong expected version for stream namespace-1: expected 0, actual 1',
    'namespace-1 v0: NamespaceCreated at position 1',
    // Position 2 went to the refused append: positions have gaps, never duplicates.
    'namespace-1 v1: NamespaceMetadataUpdated at position 3',
    'namespace row: {"id":1,"name":"analytics","metadata_":{"owner":"data-team"}}',
    '',
  ].join('\n'));
});

// Regression (found by a review): a `key` precondition read the keys as committed, so an append
// that needed a key another appender was claiming at that moment (a package build being
// registered) was refused, and in serve stored as rejected for good. It now waits for that claim.
// (A review of the first fix found it appending once the claim committed, at the positions it
// had taken before the claim's: the event that needed the key came first in the log.)
test('postgres: a key precondition waits for a claim of its key in flight: appended after the claim once it commits, refused if it rolls back, leaving no key behind', async (t) => {
  const log = await postgresLog(t);
  const key = (value: string) => ({ kind: 'key' as const, name: 'conda_package_build.id', value, message: `package build ${value} must exist` });
  const needing = (value: string): AppendRequest => ({ stream: `build-${value}`, events: events(1, 'BuildPackagesRecorded'), preconditions: [key(value)] });
  const claimer = await connect(t, log.url);
  // Watched from a connection outside the claimer's transaction, which would see one snapshot of
  // pg_stat_activity for the whole of it.
  const watcher = await connect(t, log.url);
  const keysOf = async (value: string) => (await watcher.query('SELECT stream FROM event_store.keys WHERE name = $1 AND value = $2', ['conda_package_build.id', value])).rows;
  const waitingForClaimer = async () => {
    const { rows } = await watcher.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'transactionid'");
    return rows.length > 0;
  };
  for (const outcome of ['COMMIT', 'ROLLBACK'] as const) {
    const value = outcome === 'COMMIT' ? '42' : '43';
    // Another appender claims the key and has not committed yet.
    await claimer.query('BEGIN');
    await claimer.query(APPEND_SQL, appendParameters([{ stream: 'conda_package-1', events: events(1, 'CondaPackageBuildRegistered'), claims: [{ name: 'conda_package_build.id', value }] }]));
    const appending = log.append(needing(value));
    void appending.catch(() => undefined); // awaited below
    await waitUntil(waitingForClaimer, 'the precondition to wait for the claim in flight');
    await claimer.query(outcome);
    if (outcome === 'COMMIT') {
      const [appended] = await appending;
      // After the claim in the log's order: the append was made again once the claim committed.
      const [claimed] = (await log.readStream('conda_package-1')).filter((event) => event.type === 'CondaPackageBuildRegistered');
      t.true(appended!.globalPosition > claimed!.globalPosition, `${appended!.globalPosition} after ${claimed!.globalPosition}`);
      t.deepEqual(await keysOf(value), [{ stream: 'conda_package-1' }]);
    } else {
      await t.throwsAsync(appending, { instanceOf: PreconditionFailedError, message: 'package build 43 must exist' });
      t.deepEqual(await keysOf(value), [], 'the probe of the key was undone');
    }
  }
  // No claim anywhere: refused at once, nothing left behind.
  await t.throwsAsync(log.append(needing('44')), { instanceOf: PreconditionFailedError, message: 'package build 44 must exist' });
  t.deepEqual(await keysOf('44'), []);
  t.deepEqual((await log.readStream('build-43')).length, 0);
});

// Regression (found by a review): a key precondition that names the key's holder read the key as
// last committed, and did not wait for an append of the holder in flight: an event that needed
// the key went in beside the one that released it. It now takes the holder's lock, shared.
test('postgres: a key precondition naming a holder waits for that holder\'s append in flight: refused once it released the key, and holds if it rolls back', async (t) => {
  const log = await postgresLog(t);
  const holder = 'build-7';
  const claim = { name: 'build_artifact.id', value: '9' };
  await log.append({ stream: holder, events: events(1, 'ArtifactStored'), claims: [claim] });
  const releaser = await connect(t, log.url);
  const watcher = await connect(t, log.url); // outside the releaser's transaction, whose pg_stat_activity is one snapshot
  const waiting = async () =>
    (await watcher.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'")).rowCount! > 0;
  const needing = (stream: string): AppendRequest => ({
    stream, events: events(1, 'ArtifactUsed'), preconditions: [{ kind: 'key', ...claim, holder, message: 'artifact 9 must be one of build 7' }],
  });
  for (const outcome of ['ROLLBACK', 'COMMIT'] as const) {
    // The holder's append that deletes the artifact (releases its key), not committed yet.
    await releaser.query('BEGIN');
    await releaser.query(APPEND_SQL, appendParameters([{ stream: holder, events: events(1, 'ArtifactDeleted'), releases: [claim] }]));
    const appending = log.append(needing(`report-${outcome}`));
    void appending.catch(() => undefined); // awaited below
    await waitUntil(waiting, 'the precondition to wait for the holder\'s append');
    await releaser.query(outcome);
    if (outcome === 'ROLLBACK') t.is((await appending).length, 1, 'the key is still the holder\'s');
    else await t.throwsAsync(appending, { instanceOf: PreconditionFailedError, message: 'artifact 9 must be one of build 7' });
  }
  t.is((await log.readStream('report-COMMIT')).length, 0);
});

// Regression (found by a review of the first fix, which checked once more after the wait and went
// on): an append that took its positions before the claimer of the key it needs, and waited for
// that claim, put its event ahead of the claim's in the log. It is now made again after the claim.
test('postgres: an append that needs a key claimed by a later appender in flight comes after that claim in the log', async (t) => {
  const log = await postgresLog(t);
  const other = await connect(t, log.url); // holds a key the append claims: keeps it waiting after it took its positions
  const claimer = await connect(t, log.url); // claims the key the append needs, after the append took its positions
  const watcher = await connect(t, log.url);
  const waitingOn = async (xid: string) =>
    (await watcher.query("SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted AND transactionid::text = $1", [xid])).rowCount! > 0;
  const xidOf = async (client: pg.Client) => (await client.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows[0]!.xid;
  await other.query('BEGIN');
  await other.query(APPEND_SQL, appendParameters([{ stream: 'other-1', events: events(1, 'Other'), claims: [{ name: 'other.key', value: '1' }] }]));
  const appending = log.append({
    stream: 'build-1', events: events(1, 'BuildPackagesRecorded'), claims: [{ name: 'other.key', value: '1' }],
    preconditions: [{ kind: 'key', name: 'conda_package_build.id', value: '5', message: 'package build 5 must exist' }],
  });
  void appending.catch(() => undefined); // awaited below
  await waitUntil(async () => waitingOn(await xidOf(other)), 'the append to wait for the other claim, its positions taken');
  await claimer.query('BEGIN');
  await claimer.query(APPEND_SQL, appendParameters([{ stream: 'conda_package-1', events: events(1, 'CondaPackageBuildRegistered'), claims: [{ name: 'conda_package_build.id', value: '5' }] }]));
  const claimerXid = await xidOf(claimer);
  await other.query('ROLLBACK'); // the append claims its key, then meets the claim of the key it needs, in flight
  await waitUntil(() => waitingOn(claimerXid), 'the append to wait for the claim of the key it needs');
  await claimer.query('COMMIT');
  const [appended] = await appending;
  const [registered] = await log.readStream('conda_package-1');
  t.true(appended!.globalPosition > registered!.globalPosition, `the event that needs the key at ${appended!.globalPosition}, its claim at ${registered!.globalPosition}`);
});

// Regression (found with the fix above): the same append whose needed key was claimed and
// committed by the later appender before its check ran, with no wait at all, held on that key
// and came ahead of the claim in the log. A key whose holder's last event is newer than the
// append (64-bit transaction ids, in the order of the positions) sends it round again.
test('postgres: an append that needs a key committed by a later appender before its check comes after that claim in the log', async (t) => {
  const log = await postgresLog(t);
  const other = await connect(t, log.url);
  const watcher = await connect(t, log.url);
  const waitingOn = async (xid: string) =>
    (await watcher.query("SELECT 1 FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted AND transactionid::text = $1", [xid])).rowCount! > 0;
  await other.query('BEGIN');
  await other.query(APPEND_SQL, appendParameters([{ stream: 'other-1', events: events(1, 'Other'), claims: [{ name: 'other.key', value: '1' }] }]));
  const otherXid = (await other.query<{ xid: string }>('SELECT pg_current_xact_id()::text AS xid')).rows[0]!.xid;
  const appending = log.append({
    stream: 'build-1', events: events(1, 'BuildPackagesRecorded'), claims: [{ name: 'other.key', value: '1' }],
    preconditions: [{ kind: 'key', name: 'conda_package_build.id', value: '5', message: 'package build 5 must exist' }],
  });
  void appending.catch(() => undefined); // awaited below
  await waitUntil(() => waitingOn(otherXid), 'the append to wait for the other claim, its positions taken');
  const [registered] = await log.append({ stream: 'conda_package-1', events: events(1, 'CondaPackageBuildRegistered'), claims: [{ name: 'conda_package_build.id', value: '5' }] });
  await other.query('ROLLBACK');
  const [appended] = await appending;
  t.true(appended!.globalPosition > registered!.globalPosition, `the event that needs the key at ${appended!.globalPosition}, its claim at ${registered!.globalPosition}`);
});

// Regression (found by a review): every key condition took an advisory lock on its key's value, as
// if it were a stream, which nothing else locks: a slot of the server's lock table each, and a
// batch of solves naming hundreds of package builds ran out of shared memory.
test('postgres: key conditions take no lock of their own: an append needing 2,000 keys holds its stream\'s lock and the badge only', async (t) => {
  const log = await postgresLog(t);
  const keys = Array.from({ length: 2000 }, (_, i) => ({ name: 'conda_package_build.id', value: String(i + 1) }));
  await log.append({ stream: 'conda_package-1', events: events(1, 'CondaPackageBuildsRegistered'), claims: keys });
  const appender = await connect(t, log.url);
  await appender.query('BEGIN');
  await appender.query(APPEND_SQL, appendParameters([{
    stream: 'solve-1', events: events(1, 'SolveCompleted'),
    preconditions: keys.map((key) => ({ kind: 'key' as const, ...key, message: `package build ${key.value} must exist` })),
  }]));
  const { rows: [held] } = await appender.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'");
  await appender.query('ROLLBACK');
  t.is(held!.n, 2, 'the stream solve-1 (exclusive) and the appenders\' badge (shared)');
});

// CS008 (an append undone to be made again after a claim in flight) is no refusal: translated
// into one of the log's errors, the ingester would store the message as rejected for good.
test('postgres: CS008 passes through as a transient error, not as a refusal of the log', (t) => {
  const error = Object.assign(new Error('key conda_package_build.id 5 was claimed by an append in flight: append again'), { code: 'CS008' });
  t.is(translateError(error), error);
  t.true(isTransient(error));
});


// The fence's two orders (migrations/20260101001800_writer_fences.ts). An append in flight holds
// the fence's row (hold_fence(), as its transaction runs it after its writes): a raise waits for it
// to commit, so the new writer reads what the old one wrote.
test('postgres: raising a fence waits for a fenced append in flight to commit', async (t) => {
  const log = await postgresLog(t);
  const fence = await log.raiseFence('writer');
  const appender = await connect(t, log.url);
  await appender.query('BEGIN');
  await appender.query('SELECT event_store.hold_fence($1, $2)', [fence.name, fence.epoch]);
  let raised: number | undefined;
  const raising = log.raiseFence('writer').then((hold) => (raised = hold.epoch));
  await untilOneWaits(appender, 'the raise to wait for the append');
  t.is(raised, undefined);
  await appender.query('COMMIT');
  t.is(await raising, 2);
});

// ...and a raise in flight holds back the fenced append that checks after it: the append sees the
// raise once it commits (READ COMMITTED reads the row again once its lock is granted) and fails,
// its events undone; should the raise roll back, the append goes in.
const fencedAppends = {
  // append_events() and the check
  'of several streams': [[{ stream: 'f-1', events: events(2) }, { stream: 'f-2', events: events(1) }], ['f-1', 'f-1', 'f-2']],
  // the fast path's statement and the check
  'of one event': [[{ stream: 'f-1', expectedVersion: 'no_stream', events: events(1) }], ['f-1']],
} as const satisfies Record<string, [AppendRequest[], string[]]>;
for (const outcome of ['COMMIT', 'ROLLBACK'] as const) {
  for (const [kind, [requests, streams]] of Object.entries(fencedAppends)) {
    test(`postgres: a fenced append ${kind} that meets a raise in flight waits for it, then ${outcome === 'COMMIT' ? 'fails with FencedError and writes nothing' : 'goes in when the raise rolled back'}`, async (t) => {
      const log = await postgresLog(t);
      const fence = await log.raiseFence('writer');
      const raiser = await connect(t, log.url);
      await raiser.query('BEGIN');
      await raiser.query("SELECT event_store.raise_fence('writer')");
      const appending = log.append(requests.map((request) => ({ ...request, events: [...request.events] })), { fence });
      await untilOneWaits(raiser, 'the append to wait for the raise');
      await raiser.query(outcome);
      if (outcome === 'COMMIT') {
        const error = await t.throwsAsync(appending, { instanceOf: FencedError });
        t.like(error, { fence: 'writer', held: 1, current: 2 });
        t.is(await log.headPosition(), 0);
      } else {
        t.is((await appending).length, streams.length);
        t.deepEqual((await collect(log.readAll())).map((e) => e.stream), streams);
      }
    });
  }
}
