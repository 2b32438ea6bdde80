import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { EventIdConflictError, WrongExpectedVersionError } from '../src/log/errors.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import type { AppendedEvent, AppendRequest } from '../src/log/types.js';
import { connect, freshDatabase, withClient } from './helpers/database.js';
import { tcpProxy } from './helpers/nats.js';
import { slots, waitUntil } from './helpers/projection.js';
import { collect, event, events } from './log-contract.js';

/**
 * The append queue (src/log/postgres/append-queue.ts): concurrent single-stream appends of one
 * process share a statement. With one statement at a time, an append made while another runs
 * waits; appends made in the same turn of the event loop as the first are then written together,
 * so each test below knows which appends share a statement without timing anything.
 */
const slot = slots(6);

async function queuedLog(t: ExecutionContext, statements = 1, maxEvents?: number) {
  await slot(t);
  const db = await freshDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url, appendQueue: { statements, maxEvents } });
  t.teardown(() => log.close());
  return Object.assign(log, { url: db.url });
}

/** Starts `first`, then `waiting` in the same turn (they wait for it), and settles them all. */
function firstThenTogether(log: { append(request: AppendRequest): Promise<AppendedEvent[]> }, first: AppendRequest, waiting: AppendRequest[]) {
  const started = log.append(first);
  return Promise.all([started, ...waiting.map((request) => log.append(request).catch((error: unknown) => error))]);
}

test('append queue: appends that waited go in one statement and one transaction, each with its own versions, positions and results', async (t) => {
  const log = await queuedLog(t);
  await log.append({ stream: 'existing-1', events: events(2) });
  const waiting: AppendRequest[] = [
    { stream: 'new-1', expectedVersion: 'no_stream', events: events(3) },
    { stream: 'existing-1', expectedVersion: 1, events: events(1) },
    { stream: 'new-2', expectedVersion: 'any', events: events(2) },
    { stream: 'existing-1-again', expectedVersion: 'any', events: events(1) },
  ];
  const [, ...results] = await firstThenTogether(log, { stream: 'first', events: events(1) }, waiting);
  t.deepEqual(log.appendQueueStats(), { waited: waiting.length, together: waiting.length });

  const appended = results as AppendedEvent[][];
  t.deepEqual(appended.map((each) => each.map((e) => e.streamVersion)), [[0, 1, 2], [2], [0, 1], [0]]);
  t.deepEqual(appended.map((each) => each.map((e) => e.stream)), waiting.map((request) => request.events.map(() => request.stream)));
  t.deepEqual(appended.map((each) => each.map((e) => e.id)), waiting.map((request) => request.events.map((e) => e.id)));
  t.false(appended.flat().some((e) => e.duplicate));
  // Consecutive positions, request after request, as the log holds them.
  const positions = appended.flat().map((e) => e.globalPosition);
  t.deepEqual(positions, positions.map((_, i) => positions[0]! + i));
  const log_ = await collect(log.readAll({ from: positions[0]! }));
  t.deepEqual(
    log_.map((e) => [e.globalPosition, e.id, e.stream, e.streamVersion, e.recordedAt.getTime()]),
    appended.flat().map((e) => [e.globalPosition, e.id, e.stream, e.streamVersion, e.recordedAt.getTime()]),
  );
  const client = await connect(t, log.url);
  const { rows } = await client.query<{ n: number }>(
    'SELECT count(DISTINCT transaction_id)::int AS n FROM event_store.events WHERE global_position = ANY($1::bigint[])', [positions]);
  t.is(rows[0]!.n, 1);
});

test('append queue: a wrong expected version among waiting appends fails that append alone; the others are written', async (t) => {
  const log = await queuedLog(t);
  await log.append({ stream: 'versioned-1', events: events(1) });
  const good = [{ stream: 'good-1', events: events(2) }, { stream: 'good-2', expectedVersion: 'no_stream' as const, events: events(1) }];
  const wrong = { stream: 'versioned-1', expectedVersion: 5, events: events(1) };
  const [, first, error, second] = await firstThenTogether(log, { stream: 'first', events: events(1) }, [good[0]!, wrong, good[1]!]);
  t.true(error instanceof WrongExpectedVersionError);
  t.like(error, { stream: 'versioned-1', expected: 5, actual: 0 });
  t.deepEqual((first as AppendedEvent[]).map((e) => e.streamVersion), [0, 1]);
  t.deepEqual((second as AppendedEvent[]).map((e) => e.streamVersion), [0]);
  t.deepEqual((await log.readStream('versioned-1')).map((e) => e.streamVersion), [0]);
  t.deepEqual(log.appendQueueStats(), { waited: 3, together: 0 });
});

test('append queue: an event already in the log, appended again among waiting appends, is a duplicate; a conflicting id is refused alone', async (t) => {
  const log = await queuedLog(t);
  const retried = event('Tested', { n: 1 });
  const [original] = await log.append({ stream: 'retried-1', events: [retried] });
  const conflicting = { ...event('Tested', { n: 2 }), id: retried.id };
  const [, again, newOne, conflict] = await firstThenTogether(log, { stream: 'first', events: events(1) }, [
    { stream: 'retried-1', events: [retried] },
    { stream: 'new-1', events: events(1) },
    { stream: 'other-1', events: [conflicting] },
  ]);
  t.like((again as AppendedEvent[])[0], { id: retried.id, duplicate: true, globalPosition: original!.globalPosition, streamVersion: 0 });
  t.like((newOne as AppendedEvent[])[0], { stream: 'new-1', duplicate: false, streamVersion: 0 });
  t.true(conflict instanceof EventIdConflictError);
  t.is((await collect(log.readAll())).filter((e) => e.id === retried.id).length, 1);
});

test('append queue: an append the database cannot take (an id that is no uuid) fails alone; the appends that waited with it are written', async (t) => {
  const log = await queuedLog(t);
  const [, good, bad, other] = await firstThenTogether(log, { stream: 'first', events: events(1) }, [
    { stream: 'good-1', events: events(1) },
    { stream: 'bad-1', events: [{ ...event(), id: 'not-a-uuid' }] },
    { stream: 'good-2', events: events(1) },
  ]);
  t.true(bad instanceof Error);
  t.regex((bad as Error).message, /uuid/);
  t.like((good as AppendedEvent[])[0], { stream: 'good-1', streamVersion: 0 });
  t.like((other as AppendedEvent[])[0], { stream: 'good-2', streamVersion: 0 });
  t.deepEqual((await collect(log.readAll())).map((e) => e.stream), ['first', 'good-1', 'good-2']);
});

test('append queue: two appends of one stream never share a statement, and keep the order they came in', async (t) => {
  const log = await queuedLog(t);
  const [, a1, b, a2] = await firstThenTogether(log, { stream: 'first', events: events(1) }, [
    { stream: 'same-1', events: [event('First')] },
    { stream: 'other-1', events: events(1) },
    { stream: 'same-1', events: [event('Second')] },
  ]);
  t.is((a1 as AppendedEvent[])[0]!.streamVersion, 0);
  t.is((a2 as AppendedEvent[])[0]!.streamVersion, 1);
  t.is((b as AppendedEvent[])[0]!.streamVersion, 0);
  // same-1's first append went with other-1; its second came after, in a statement of its own.
  t.deepEqual(log.appendQueueStats(), { waited: 3, together: 2 });
  t.deepEqual((await log.readStream('same-1')).map((e) => e.type), ['First', 'Second']);
});

test('append queue: with two statements, an append waits behind one of its stream in flight, while another stream\'s goes', async (t) => {
  const log = await queuedLog(t, 2);
  const first = log.append({ stream: 'same-1', events: [event('First')] });
  const second = log.append({ stream: 'same-1', events: [event('Second')] });
  const other = log.append({ stream: 'other-1', events: events(1) });
  const [a, b, c] = await Promise.all([first, second, other]);
  t.deepEqual([a![0]!.streamVersion, b![0]!.streamVersion, c![0]!.streamVersion], [0, 1, 0]);
  t.deepEqual((await log.readStream('same-1')).map((e) => e.type), ['First', 'Second']);
  t.is(log.appendQueueStats().waited, 2);
});

test('append queue: an append too large for the statement being filled holds back the later appends of its stream (maxEvents)', async (t) => {
  const log = await queuedLog(t, 1, 3);
  const [, , large, small] = await firstThenTogether(log, { stream: 'first', events: events(1) }, [
    { stream: 'other-1', events: events(1) },
    { stream: 'same-1', events: events(3, 'Large') },
    { stream: 'same-1', events: [event('Small')] },
  ]);
  t.deepEqual((large as AppendedEvent[]).map((e) => e.streamVersion), [0, 1, 2]);
  t.deepEqual((small as AppendedEvent[]).map((e) => e.streamVersion), [3]);
  t.deepEqual((await log.readStream('same-1')).map((e) => e.type), ['Large', 'Large', 'Large', 'Small']);
});

test('append queue: a connection lost under a shared statement fails every append of it with that error; appended again, each event is in the log once', async (t) => {
  await slot(t);
  const db = await freshDatabase(t);
  const proxy = await tcpProxy(t, { host: '127.0.0.1', port: Number(new URL(db.url).port || 5432) });
  const log = createPostgresEventLog({ connectionString: proxy.urlThrough(db.url), appendQueue: { statements: 1 } });
  t.teardown(() => log.close().catch(() => undefined));
  // The shared statement waits for a stream lock held here, until the connection is cut.
  const holder = await connect(t, db.url);
  await holder.query('BEGIN');
  await holder.query("SELECT pg_advisory_xact_lock(7401, hashtext('held-1'))");
  const waiting: AppendRequest[] = [{ stream: 'held-1', events: events(1) }, { stream: 'free-1', events: events(2) }];
  const outcomes = firstThenTogether(log, { stream: 'first', events: events(1) }, waiting);
  await waitUntilSharedStatementWaits(db.url);
  proxy.cut();
  const [, ...errors] = await outcomes;
  for (const error of errors) {
    t.true(error instanceof Error);
    t.false(error instanceof WrongExpectedVersionError);
  }
  await holder.query('COMMIT');
  proxy.restore();
  // The outcome was unknown: appending the same events again writes each of them once.
  for (const request of waiting) await log.append(request);
  const all = await collect(log.readAll());
  t.deepEqual(all.map((e) => e.stream).sort(), ['first', 'free-1', 'free-1', 'held-1']);
});

/**
 * Waits until a backend of `url`'s database runs the shared statement and waits for a lock.
 * (Regression, a flaky test: pg_stat_activity lists every database's backends, and a shared
 * statement of a test running alongside, waiting for a lock of its own, ended the wait before this
 * test's first append had finished; the connection was cut under it.)
 */
function waitUntilSharedStatementWaits(url: string) {
  return waitUntil(async () => Boolean(await withClient(url, async (client) => (await client.query(
    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%Several single-stream appends%' AND wait_event_type = 'Lock'")).rowCount)), 'the shared statement to wait for its lock');
}

test('append queue: closing the log writes the appends still waiting, then refuses new ones', async (t) => {
  const log = await queuedLog(t);
  const outcomes = firstThenTogether(log, { stream: 'first', events: events(1) }, [
    { stream: 'waiting-1', events: events(1) },
    { stream: 'waiting-2', events: events(1) },
  ]);
  await log.close();
  const [first, ...rest] = await outcomes;
  t.is((first as AppendedEvent[]).length, 1);
  for (const appended of rest) t.is((appended as AppendedEvent[])[0]!.streamVersion, 0);
  await t.throwsAsync(log.append({ stream: 'late-1', events: events(1) }), { message: /closed/ });
  const db = await withClient(log.url, (client) => client.query<{ n: number }>('SELECT count(*)::int AS n FROM event_store.events'));
  t.is(db.rows[0]!.n, 3);
});

test('append queue: options that are not positive integers are refused with their name', (t) => {
  t.throws(() => createPostgresEventLog({ connectionString: 'postgres://127.0.0.1/none', appendQueue: { statements: 0 } }), { message: /appendQueue.statements must be a positive integer, got 0/ });
  t.throws(() => createPostgresEventLog({ connectionString: 'postgres://127.0.0.1/none', appendQueue: { maxEvents: Number.NaN } }), { message: /appendQueue.maxEvents must be a positive integer, got NaN/ });
});

test('append queue: two processes, eight writers each, racing for a few streams with expected versions: no deadlock, every stream gapless, no write lost or doubled', async (t) => {
  const log = await queuedLog(t, 2);
  const second = createPostgresEventLog({ connectionString: log.url, appendQueue: { statements: 2 } });
  t.teardown(() => second.close());
  const streams = ['race-1', 'race-2', 'race-3', 'race-4', 'race-5'];
  const written: string[] = [];
  let refused = 0;
  const writer = async (appender: typeof log, w: number) => {
    for (let i = 0; i < 40; i++) {
      const stream = streams[(w + i) % streams.length]!;
      const last = (await appender.readStream(stream, { direction: 'backward', maxCount: 1 }))[0];
      const batch = events(1 + (i % 3));
      try {
        // Half of them check the version they read, half append wherever the stream is.
        await appender.append({ stream, expectedVersion: i % 2 ? (last?.streamVersion ?? 'no_stream') : 'any', events: batch });
        written.push(...batch.map((e) => e.id));
      } catch (error) {
        if (!(error instanceof WrongExpectedVersionError)) throw error;
        refused++;
      }
    }
  };
  await Promise.all([log, second].flatMap((appender) => Array.from({ length: 8 }, (_, w) => writer(appender as typeof log, w))));
  const all = await collect(log.readAll());
  t.deepEqual(all.map((e) => e.id).sort(), [...written].sort());
  for (const stream of streams) {
    const versions = all.filter((e) => e.stream === stream).map((e) => e.streamVersion);
    t.deepEqual(versions, versions.map((_, i) => i), stream);
  }
  t.true(log.appendQueueStats().together + second.appendQueueStats().together > 0);
  t.log(`written ${written.length}, refused ${refused}, together ${log.appendQueueStats().together} + ${second.appendQueueStats().together}`);
});

test('append queue: a lone appender never waits: its next append, made as soon as it hears of the last, finds the statement free', async (t) => {
  const log = await queuedLog(t);
  for (let i = 0; i < 20; i++) await log.append({ stream: `alone-${randomUUID()}`, events: events(1) });
  t.deepEqual(log.appendQueueStats(), { waited: 0, together: 0 });
});

/** How many events each transaction wrote, in commit order. */
async function transactionSizes(t: ExecutionContext, url: string): Promise<number[]> {
  const client = await connect(t, url);
  const { rows } = await client.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM event_store.events GROUP BY transaction_id ORDER BY min(global_position)');
  return rows.map((row) => row.n);
}

/** `writers` appenders, each making `appends` one-event appends, one after the other. */
async function writersInStep(log: { append(request: AppendRequest): Promise<AppendedEvent[]> }, writers: number, appends: number) {
  await Promise.all(Array.from({ length: writers }, async () => {
    for (let i = 0; i < appends; i++) await log.append({ stream: `writer-${randomUUID()}`, expectedVersion: 'no_stream', events: events(1) });
  }));
}

// Regression: the callers of a shared statement came back one by one, and the first took the free
// statement alone, so the others waited for the next one: with one statement at a time, four
// writers went one, three, one, three... instead of four together, and two writers one and one
// for ever (found in review).
test('append queue: two writers in step with one statement go together', async (t) => {
  const log = await queuedLog(t, 1);
  await writersInStep(log, 2, 10);
  t.deepEqual(await transactionSizes(t, log.url), [1, ...Array<number>(9).fill(2), 1]);
});

test('append queue: the callers of a shared statement that append again at once go together again, not one ahead of the others', async (t) => {
  const log = await queuedLog(t, 1);
  await writersInStep(log, 4, 12);
  // The first append goes at once, the three made meanwhile wait for it and for its caller's next:
  // from then on all four, until the first writer has made its twelve.
  t.deepEqual(await transactionSizes(t, log.url), [1, ...Array<number>(11).fill(4), 3]);
});

// Regression: with two statements, a statement that ended took every append waiting, while a
// lone one ran in the other: one, one and six, over and over. Each now takes its fair share of the
// appends waiting and in flight. (When the writers start, and as they finish, the counts differ.)
test('append queue: eight writers in step with two statements share them evenly, four and four', async (t) => {
  const log = await queuedLog(t, 2);
  await writersInStep(log, 8, 20);
  const sizes = await transactionSizes(t, log.url);
  const inFours = sizes.filter((n) => n === 4).length * 4;
  t.true(inFours >= 0.75 * 160, `statements carried ${sizes.join(', ')}`);
});
