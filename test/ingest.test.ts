/**
 * NATS ingestion against a real NATS JetStream and PostgreSQL (contract.md, "NATS ingestion";
 * issue #6). Each test has its own database and its own stream, subjects and consumer.
 *
 * Given events published over NATS (concurrently, twice, mixed with malformed messages, while the
 * database is cut off, while `serve` is killed or stopped), when ingested, then the log holds
 * each valid event exactly once, in an order the producers could rely on, every invalid message
 * is in event_store.rejected_messages with a reason naming what is wrong, and the tables are
 * exactly those of the same history appended directly.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { connect, DiscardPolicy, nanos, RetentionPolicy, StorageType, type StoredMsg } from 'nats';
import type pg from 'pg';
import { EventValidationError, type Envelope } from '../src/catalogue/index.js';
import { appendEnvelopes } from '../src/decide/append-batch.js';
import { addCounts, batchLimit, createIngester, fromStream, storeRejections } from '../src/ingest/consumer.js';
import { MAX_IDS_REQUESTS_AT_ONCE, MAX_IDS_REQUESTS_WAITING, requestIds, startIdsResponder, STOPPING_ERROR } from '../src/ingest/ids-responder.js';
import { NoStreamError, publishEvent, publishEvents, type PublishFailure } from '../src/ingest/publish.js';
import { readIngestionStatus } from '../src/ingest/status.js';
import { connectNats, consumerConfig, consumerProblems, discardingLimits, ensureIngestion, eventSubject, idsSubject, natsConnectionOptions, redactedNatsUrl } from '../src/ingest/stream.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { FencedError } from '../src/log/errors.js';
import type { EventLog } from '../src/log/types.js';
import { createProjectionService } from '../src/projection/service.js';
import { condaStoreProjections } from '../projections/index.js';
import { root, runCli, spawnCli, waitForExit } from './helpers/cli.js';
import { connect as connectPg, serverUrl, testPool } from './helpers/database.js';
import { generatedHistory } from './helpers/generated-history.js';
import { realisticHistory } from './helpers/history.js';
import { settlesWithin } from '../src/sleep.js';
import { consumerFigures, natsUrl, privateNats, publishRaw, runIngester, tcpProxy, testNats, type TestNats } from './helpers/nats.js';
import { catchUp, checkpointRows, projectHistory, silentLogger, tableDigests, testLog, waitUntil, type TestLog } from './helpers/projection.js';
import { envelopeFor } from './helpers/samples.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** The tables of the same envelopes appended directly (appendEnvelopes) and caught up: the reference. */
async function referenceDigests(t: ExecutionContext, envelopes: Envelope[]) {
  const reference = await projectHistory(t, envelopes);
  return tableDigests(reference.url);
}

async function logCount(db: Pick<TestLog, 'query'>): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_store.events');
  return row!.n;
}

/**
 * The log holds each envelope exactly once and nothing else, and within every stream the events
 * are in the order the producers published them.
 */
async function assertExactlyOnce(t: ExecutionContext, db: Pick<TestLog, 'query'>, envelopes: Envelope[]) {
  const rows = await db.query<{ id: string; stream: string }>('SELECT id::text, stream FROM event_store.events ORDER BY global_position');
  t.is(rows.length, envelopes.length, 'one event per envelope');
  t.is(new Set(rows.map((r) => r.id)).size, rows.length, 'no event twice');
  t.deepEqual(rows.map((r) => r.id).sort(), envelopes.map((e) => e.id).sort(), 'the same events');
  const byStream = (list: { id: string; stream: string }[]) => {
    const streams = new Map<string, string[]>();
    for (const { id, stream } of list) streams.set(stream, [...(streams.get(stream) ?? []), id]);
    return Object.fromEntries([...streams].sort(([a], [b]) => a.localeCompare(b)));
  };
  t.deepEqual(byStream(rows), byStream(envelopes), 'each stream in publishing order');
}

async function ingestionStats(db: Pick<TestLog, 'query'>) {
  const rows = await db.query<{ accepted: number; duplicates: number; rejected: number }>(
    'SELECT accepted::int, duplicates::int, rejected::int FROM event_store.ingestion_stats',
  );
  return rows[0] ?? { accepted: 0, duplicates: 0, rejected: 0 };
}

/** The counters (written in the background, so waited for) are `expected`. */
async function assertStats(t: ExecutionContext, db: Pick<TestLog, 'query'>, expected: { accepted: number; duplicates: number; rejected: number }) {
  const matches = (stats: typeof expected) => stats.accepted === expected.accepted && stats.duplicates === expected.duplicates && stats.rejected === expected.rejected;
  await waitUntil(async () => matches(await ingestionStats(db)), `ingestion_stats ${JSON.stringify(expected)}`, { timeoutMs: 10_000 }).catch(() => undefined);
  t.deepEqual(await ingestionStats(db), expected, 'ingestion_stats');
}

async function rejectedCount(db: Pick<TestLog, 'query'>): Promise<number> {
  const [row] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM event_store.rejected_messages');
  return row!.n;
}

/** Every projection is at the head of the log. */
async function projectionsCaughtUp(db: Pick<TestLog, 'query' | 'url'>): Promise<boolean> {
  const head = (await db.query<{ head: number }>('SELECT coalesce(max(global_position), 0)::int AS head FROM event_store.events'))[0]!.head;
  const checkpoints = Object.values(await checkpointRows(db.url));
  return checkpoints.length >= condaStoreProjections.length && checkpoints.every((c) => c.position >= head);
}

/** Publishes each envelope, then the same event again with another Nats-Msg-Id (beyond JetStream's dedupe). */
async function publishTwice(nats: TestNats, envelopes: Envelope[], signal?: AbortSignal): Promise<number> {
  let published = 0;
  for (const envelope of envelopes) {
    if (signal?.aborted) break;
    await publishEvent(nats.nc, envelope, { names: nats.names });
    await publishRaw(nats.nc, eventSubject(nats.names, envelope.type), JSON.stringify(envelope), { msgID: `${envelope.id}:again` });
    published += 1;
  }
  return published;
}

interface Serve {
  child: ChildProcess;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `conda-store-events serve` as a child process on the test's database and stream; killed at teardown. */
function startServe(t: ExecutionContext, databaseUrl: string, nats: TestNats, args: string[] = []): Serve {
  const child = spawnCli(['serve', '--ingest-batch-size', '25', ...args], { env: { DATABASE_URL: databaseUrl, ...nats.env, LOG_LEVEL: 'warn' } });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  child.stdout!.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  return { child, stderr: () => stderr, exited };
}

/** The streams an event touches: its own and those of the aggregates its data names. */
const REFERENCES: Record<string, string> = {
  namespace_id: 'namespace',
  other_namespace_id: 'namespace',
  environment_id: 'environment',
  specification_id: 'specification',
  build_id: 'build',
  current_build_id: 'build',
  channel_id: 'conda_channel',
  package_id: 'conda_package',
  solve_id: 'solve',
  conda_package_build_id: 'conda_package_build',
  conda_package_build_ids: 'conda_package_build',
};
/** Events whose effect reaches rows of other aggregates (soft deletes cascade, purges need children gone). */
const BARRIERS = new Set(['NamespaceDeleted', 'EnvironmentDeleted', 'NamespacePurged', 'EnvironmentPurged', 'BuildPurged']);

function touched(envelope: Envelope): Set<string> {
  const keys = new Set([envelope.stream]);
  for (const [field, value] of Object.entries(envelope.data as Record<string, unknown>)) {
    const kind = REFERENCES[field];
    if (kind) for (const id of Array.isArray(value) ? value : [value]) keys.add(`${kind}-${id}`);
  }
  return keys;
}

/**
 * Publishes a history with `k` concurrent publishers, each on its own connection and owning whole
 * aggregates (streams), so each stream's events come from one publisher in order. Like real
 * producers, a publisher waits for the acknowledgement of the events its next event depends on
 * (another publisher's namespace before its environment): JetStream's order then carries that
 * dependency to the log. Returns the number of times publishers ran concurrently.
 */
async function publishConcurrently(nats: TestNats, envelopes: Envelope[], k: number): Promise<void> {
  const owner = new Map<string, number>();
  for (const envelope of envelopes) if (!owner.has(envelope.stream)) owner.set(envelope.stream, owner.size % k);
  const keys = envelopes.map(touched);
  const acked = envelopes.map(() => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  });
  const dependencies = envelopes.map((envelope, i) =>
    envelopes
      .slice(0, i)
      .map((_, j) => j)
      .filter((j) => owner.get(envelopes[j]!.stream) !== owner.get(envelope.stream))
      .filter((j) => BARRIERS.has(envelope.type) || BARRIERS.has(envelopes[j]!.type) || [...keys[j]!].some((key) => keys[i]!.has(key))),
  );
  await Promise.all(
    Array.from({ length: k }, async (_, publisher) => {
      const nc = await connect({ servers: natsUrl, name: `publisher ${publisher}` });
      try {
        for (let i = 0; i < envelopes.length; i++) {
          if (owner.get(envelopes[i]!.stream) !== publisher) continue;
          await Promise.all(dependencies[i]!.map((j) => acked[j]!.promise));
          await publishEvent(nc, envelopes[i]!, { names: nats.names });
          acked[i]!.resolve();
        }
      } finally {
        await nc.close();
      }
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Ordering and exactly-once

test.serial('the realistic history, published by three concurrent publishers, ends as exactly the expected rows', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const history = realisticHistory();
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 10 });

  await publishConcurrently(nats, history, 3);
  await waitUntil(() => ingester.totals().messages >= history.length, 'every message ingested');

  t.deepEqual(ingester.totals(), { messages: history.length, appended: history.length, duplicates: 0, rejected: 0 });
  await assertExactlyOnce(t, db, history);
  await assertStats(t, db, { accepted: history.length, duplicates: 0, rejected: 0 });
  t.is(await rejectedCount(db), 0);
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending === 0, 'every message acked');
  t.like(await consumerFigures(nats.jsm, nats.names), { pending: 0, ackPending: 0 });

  await catchUp(db.url, db.log);
  t.deepEqual(await tableDigests(db.url), await referenceDigests(t, history));
});

test.serial('every event published three times (twice past the JetStream dedupe window) is in the log once', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const history = realisticHistory();
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 16 });

  // Each event, then at once the same event under another Nats-Msg-Id (often in the same batch);
  // then the whole history again without Nats-Msg-Id, after it is in the log (a build event
  // delivered again after its build completed must be a duplicate, not a broken rule).
  await publishTwice(nats, history);
  await waitUntil(() => ingester.totals().messages >= 2 * history.length, 'the first two copies ingested');
  for (const envelope of history) await publishRaw(nats.nc, eventSubject(nats.names, envelope.type), JSON.stringify(envelope));
  await waitUntil(() => ingester.totals().messages >= 3 * history.length, 'every copy ingested');

  t.deepEqual(ingester.totals(), { messages: 3 * history.length, appended: history.length, duplicates: 2 * history.length, rejected: 0 });
  await assertExactlyOnce(t, db, history);
  await assertStats(t, db, { accepted: history.length, duplicates: 2 * history.length, rejected: 0 });
  t.is(await rejectedCount(db), 0);

  await catchUp(db.url, db.log);
  t.deepEqual(await tableDigests(db.url), await referenceDigests(t, history));
});

test.serial('a message held by a consumer that died is waited for: a later one never overtakes it', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: { ackWaitMs: 2000 } });
  const namespace = envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'default' });
  const environment = envelopeFor('EnvironmentCreated', { environment_id: 1, namespace_id: 1, name: 'python-data' });
  await publishEvents(nats.nc, [namespace, environment], { names: nats.names });
  // Another process took the namespace's message and died without acking it: JetStream hands the
  // environment's message to the ingester first, and the namespace's only after its ack wait.
  const dead = await connect({ servers: natsUrl });
  const held = await (await dead.jetstream().consumers.get(nats.names.stream, nats.names.durable)).next({ expires: 5000 });
  t.is(held?.seq, 1);
  await dead.close();

  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 2, 'both messages ingested', { timeoutMs: 20_000 });
  t.like(ingester.totals(), { appended: 2, rejected: 0 });
  const rows = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(rows.map((r) => r.id), [namespace.id, environment.id], 'the namespace first, as published');
});

// The ingester once sat idle for about half a minute in bench/ingest: a message it was waiting
// for came back only after the consumer's ack wait. A delivery can be lost on the client side (a
// fetch's subscription is closed when the fetch ends; a message the server sent for it after
// that is dropped), or held by a process that died: either way the message is still in the
// stream, and the ingester reads it from there after a short wait.
/**
 * Three namespaces published, the first one's delivery lost: taken by a subscription that never
 * hands it on. The ack wait is far longer than a test may take: only reading the stream can get
 * the message in time.
 */
async function firstDeliveryLost(t: ExecutionContext) {
  const db = await testLog(t);
  const nats = await testNats(t, { create: { ackWaitMs: 10 * 60_000 } });
  const namespaces = [1, 2, 3].map((id) => envelopeFor('NamespaceCreated', { namespace_id: id, name: `ns-${id}` }));
  await publishEvents(nats.nc, namespaces, { names: nats.names });
  const lost = await connect({ servers: natsUrl });
  t.teardown(() => lost.close());
  const delivered = await (await lost.jetstream().consumers.get(nats.names.stream, nats.names.durable)).next({ expires: 5000 });
  t.is(delivered?.seq, 1);
  return { db, nats, namespaces, delivered: delivered! };
}

/** The log holds the namespaces once each, in the order published. */
async function assertInOrderOnce(t: ExecutionContext, db: TestLog, namespaces: Envelope[]) {
  const rows = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(rows.map((r) => r.id), namespaces.map((n) => n.id), 'once each, in the order published');
}

test.serial('a message whose delivery was lost is read from the stream after a few seconds, not after the ack wait; order is kept', async (t) => {
  const { db, nats, namespaces, delivered } = await firstDeliveryLost(t);
  // Read from the stream, it is the message as delivered, to its stored time (a rejected message's
  // row is keyed by that time: its later delivery must land on the same row).
  const read = fromStream(await nats.jsm.streams.getMessage(nats.names.stream, { seq: 1 }), nats.names.stream);
  t.like(read, { seq: 1, subject: delivered.subject, info: { stream: nats.names.stream, timestampNanos: delivered.info.timestampNanos } });
  t.deepEqual(Buffer.from(read.data), Buffer.from(delivered.data));

  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 3, 'all three messages ingested', { timeoutMs: 60_000 });
  t.like(ingester.totals(), { appended: 3, duplicates: 0, rejected: 0 });
  await assertInOrderOnce(t, db, namespaces);
});

test.serial('a batch holding a message read from the stream fails: the message is read again after the retry delay, and goes in once, in order', async (t) => {
  const { db, nats, namespaces } = await firstDeliveryLost(t);
  // The first append will wait for a lock on namespace-1's stream, and its connection is then killed.
  const blocker = await connectPg(t, db.url);
  await blocker.query('BEGIN');
  await blocker.query("SELECT pg_advisory_xact_lock(7401, hashtext('namespace-1'))");

  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names });
  let waiter: number | undefined;
  await waitUntil(async () => {
    const { rows } = await blocker.query<{ pid: number }>("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7401 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
    waiter = rows[0]?.pid;
    return waiter !== undefined;
  }, 'the batch with the message read from the stream to wait for the lock', { timeoutMs: 30_000 });
  await blocker.query('SELECT pg_terminate_backend($1)', [waiter]);
  await waitUntil(() => ingester.retries >= 1, 'the batch to fail and be retried');
  await blocker.query('COMMIT');

  await waitUntil(() => ingester.totals().messages >= 3, 'all three messages ingested', { timeoutMs: 60_000 });
  t.like(ingester.totals(), { appended: 3, duplicates: 0, rejected: 0 });
  await assertInOrderOnce(t, db, namespaces);
});

test.serial('messages deleted from the stream leave a gap that is skipped: the ones after it go in, in order', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const namespaces = [1, 2, 3, 4, 5].map((id) => envelopeFor('NamespaceCreated', { namespace_id: id, name: `ns-${id}` }));
  await publishEvents(nats.nc, namespaces, { names: nats.names });
  // An operator removed sequences 2 to 4 (e.g. with `nats stream rmm`) before they were ingested.
  for (const seq of [2, 3, 4]) await nats.jsm.streams.deleteMessage(nats.names.stream, seq);

  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 2, 'the remaining messages ingested', { timeoutMs: 20_000 });
  t.like(ingester.totals(), { appended: 2, rejected: 0 });
  const rows = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(rows.map((r) => r.id), [namespaces[0]!.id, namespaces[4]!.id]);
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending === 0, 'every message acked');
});

test('discardingLimits names the limits of a stream that drop messages not taken yet', (t) => {
  const none = { max_age: 0, max_msgs: -1, max_bytes: -1, max_msgs_per_subject: -1, discard: DiscardPolicy.Old };
  t.deepEqual(discardingLimits(none), []);
  t.deepEqual(discardingLimits({ ...none, max_age: 3600e9, max_msgs: 10, max_bytes: 1024, max_msgs_per_subject: 2 }), ['max_age 3600 s', 'max_msgs_per_subject 2', 'max_msgs 10', 'max_bytes 1024']);
  // Discard "new" refuses publishes at the limit, which the producer sees: nothing accepted is dropped.
  t.deepEqual(discardingLimits({ ...none, max_msgs: 10, max_bytes: 1024, discard: DiscardPolicy.New }), []);
});

// Regression (found in review): a stream whose limits dropped messages not ingested yet (during a
// database outage, say) was used without a word, and the floor moved past them at debug level.
test.serial('a stream that discards by its limits is named at start; messages that leave it before they are ingested are named, with their count', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t);
  await nats.jsm.streams.add({
    name: nats.names.stream, subjects: [`${nats.names.subjectPrefix}.events.>`], storage: StorageType.File,
    retention: RetentionPolicy.Workqueue, max_age: nanos(3_600_000),
  });
  const records: { msg: string; from?: number; to?: number; messages?: number; limits?: string[] }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as (typeof records)[number]) });
  const events = Array.from({ length: 11 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  const held = holdingLog(db.log);
  held.hold();
  await publishEvents(nats.nc, events.slice(0, 1), { names: nats.names });
  // batchSize 1: the first message in flight (held), then a buffer of 4, the rest left in the stream.
  const ingester = runIngester(t, { nc: nats.nc, log: held.log, databaseUrl: db.url, names: nats.names, batchSize: 1, logger });
  await waitUntil(() => held.waiting() === 1, 'the first batch in flight');
  await publishEvents(nats.nc, events.slice(1), { names: nats.names });
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending >= 5, 'the buffer filled');
  // Everything before sequence 9 leaves the stream: 1 to 5 are held by the ingester, 6 to 8 are not.
  await nats.jsm.streams.purge(nats.names.stream, { seq: 9 });
  held.release();
  await waitUntil(() => ingester.totals().messages >= 8, 'the messages it held and those left in the stream');
  const rows = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(rows.map((r) => r.id), [...events.slice(0, 5), ...events.slice(8)].map((e) => e.id));
  t.deepEqual(records.find((r) => r.limits)?.limits, ['max_age 3600 s']);
  t.like(records.find((r) => r.msg.startsWith('messages left the stream without this ingester taking them')), { from: 6, to: 8, messages: 3 });
});

test('addCounts: counts add up; the last sequence is the greater within a stream, the later one\'s across a stream created again, kept when the later counts have none', (t) => {
  const counts = (sequence: number, streamCreated?: string, accepted = 1) => ({ accepted, duplicates: 0, rejected: 0, sequence, streamCreated });
  t.deepEqual(addCounts(counts(9, 'a'), counts(7, 'a')), counts(9, 'a', 2));
  t.deepEqual(addCounts(counts(9, 'a'), counts(2, 'b')), counts(2, 'b', 2));
  t.deepEqual(addCounts(counts(9, 'a'), counts(0)), counts(9, 'a', 2));
  t.deepEqual(addCounts(counts(0), counts(3, 'b')), counts(3, 'b', 2));
});

// Regression: the ingester walked a run of sequences without a message of its own one lookup per
// sequence, 1,000 a second, so a million messages of another subject ahead of its first event
// (an operator's stream that captures more than the events, taken as it is) held ingestion for
// some seventeen minutes. Neither the stream's first sequence (those messages stay: no consumer
// takes them) nor the consumer's ack floor (nothing acked yet) passes them: the ingester must find
// its next message itself, and the server looks for it in one request (next_by_subj).
test.serial('regression: thousands of messages of another subject ahead of the first event are passed in one lookup, not one a sequence', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t);
  const audit = `${nats.names.subjectPrefix}.audit`;
  await nats.jsm.streams.add({ name: nats.names.stream, subjects: [`${nats.names.subjectPrefix}.events.>`, audit] });
  await ensureIngestion(nats.nc, nats.names);
  const OTHERS = 3000;
  for (let i = 0; i < OTHERS; i += 500) await Promise.all(Array.from({ length: 500 }, () => publishRaw(nats.nc, audit, 'not for the ingester')));
  const namespaces = [1, 2].map((id) => envelopeFor('NamespaceCreated', { namespace_id: id, name: `ns-${id}` }));
  await publishEvents(nats.nc, namespaces, { names: nats.names });

  const records: { msg: string; from?: number; to?: number }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as { msg: string }) });
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, logger });
  await waitUntil(() => ingester.totals().messages >= 2, 'both events ingested', { timeoutMs: 30_000 });
  const rows = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(rows.map((r) => r.id), namespaces.map((e) => e.id));
  const skipped = records.filter((r) => r.msg === 'stream sequences not in the stream; skipped').map((r) => [r.from, r.to]);
  t.deepEqual(skipped, [[1, OTHERS]]);
});

// ---------------------------------------------------------------------------------------------
// Rejected messages

const UUID = () => randomUUID();
const ns = (data: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: UUID(), type: 'NamespaceCreated', stream: `namespace-${String(data.namespace_id)}`, data, ...extra });

interface CorpusEntry {
  what: string;
  /** The event type the message is published under (its subject); default NamespaceCreated. */
  subjectType?: string;
  /** A whole subject, when it is not `<prefix>.events.<type>`. */
  subject?: (names: TestNats['names']) => string;
  body: string | Uint8Array;
  reason: RegExp;
}

/** Messages that are wrong whatever the log holds: published among the valid ones. */
/** Random, so that compression cannot bring it under the btree limit. */
const LONG_PREFIX = randomBytes(4000).toString('hex');

const MALFORMED: CorpusEntry[] = [
  { what: 'empty body', body: '', reason: /empty message body/ },
  { what: 'not UTF-8', body: new Uint8Array([0xff, 0xfe, 0x7b, 0x22]), reason: /not valid UTF-8/ },
  { what: 'not JSON', body: 'namespace default created', reason: /not valid JSON/ },
  { what: 'truncated JSON', body: '{"id": "8c9d6e1f-', reason: /not valid JSON/ },
  { what: 'a JSON array', body: '[{"type": "NamespaceCreated"}]', reason: /envelope: \/: must be an object \(got an array\)/ },
  { what: 'a JSON string', body: '"NamespaceCreated"', reason: /\/: must be an object/ },
  { what: 'JSON null', body: 'null', reason: /\/: must be an object/ },
  { what: 'a JSON number', body: '42', reason: /\/: must be an object/ },
  { what: 'no id', body: JSON.stringify({ type: 'NamespaceCreated', stream: 'namespace-31', data: { namespace_id: 31, name: 'x31' } }), reason: /\/id: is required/ },
  { what: 'id not a uuid', body: ns({ namespace_id: 32, name: 'x32' }, { id: 'event-32' }), reason: /\/id: must be a UUID .*\(got "event-32"\)/ },
  { what: 'no type', body: JSON.stringify({ id: UUID(), stream: 'namespace-33', data: { namespace_id: 33, name: 'x33' } }), reason: /\/type: is required/ },
  { what: 'unknown type', subjectType: 'PackageExploded', body: JSON.stringify({ id: UUID(), type: 'PackageExploded', stream: 'x-1', data: {} }), reason: /unknown event type "PackageExploded"/ },
  { what: 'misspelt type', subjectType: 'NamespaceCreate', body: ns({ namespace_id: 34, name: 'x34' }, { type: 'NamespaceCreate' }), reason: /unknown event type "NamespaceCreate" \(did you mean NamespaceCreated\?\)/ },
  { what: 'no stream', body: JSON.stringify({ id: UUID(), type: 'NamespaceCreated', data: { namespace_id: 35, name: 'x35' } }), reason: /\/stream: is required/ },
  { what: 'stream of another aggregate', body: ns({ namespace_id: 36, name: 'x36' }, { stream: 'namespace-37' }), reason: /\/stream: expected namespace-36 .*got namespace-37/ },
  { what: 'no data', body: JSON.stringify({ id: UUID(), type: 'NamespaceCreated', stream: 'namespace-38' }), reason: /\/data: is required/ },
  { what: 'data an array', body: ns({ namespace_id: 39 }, { data: [39, 'x39'] }), reason: /\/data: must be an object/ },
  { what: 'required field missing', body: ns({ namespace_id: 40 }), reason: /\/data\/name: is required/ },
  { what: 'field of the wrong type', body: ns({ namespace_id: 41 }, { data: { namespace_id: 'forty-one', name: 'x41' }, stream: 'namespace-41' }), reason: /\/data\/namespace_id: must be a positive integer \(got "forty-one"\)/ },
  { what: 'negative id', subjectType: 'BuildStarted', body: JSON.stringify({ id: UUID(), type: 'BuildStarted', stream: 'build--3', data: { build_id: -3, started_on: '2024-03-02T10:00:05Z' } }), reason: /\/data\/build_id: must be >= 1 \(got -3\)/ },
  { what: 'not a timestamp', subjectType: 'BuildStarted', body: JSON.stringify({ id: UUID(), type: 'BuildStarted', stream: 'build-1', data: { build_id: 1, started_on: 'yesterday' } }), reason: /\/data\/started_on: .*\(got "yesterday"\)/ },
  { what: 'value outside an enum', subjectType: 'ArtifactStored', body: JSON.stringify({ id: UUID(), type: 'ArtifactStored', stream: 'build-1', data: { build_id: 1, build_artifact_id: 99, artifact_type: 'TARBALL', key: 'k' } }), reason: /\/data\/artifact_type: must be one of .*DIRECTORY.*\(got "TARBALL"\)/ },
  { what: 'unknown data field', body: ns({ namespace_id: 42, name: 'x42', owner: 'me' }), reason: /\/data\/owner: is not allowed/ },
  { what: 'misspelt envelope field', body: ns({ namespace_id: 43, name: 'x43' }, { expected_version: 'no_stream' }), reason: /\/expected_version: is not allowed \(did you mean expectedVersion\?\)/ },
  { what: 'expectedVersion not a version', body: ns({ namespace_id: 44, name: 'x44' }, { expectedVersion: 'latest' }), reason: /\/expectedVersion: must be a non-negative integer up to 2147483647 or one of no_stream, stream_exists, any/ },
  { what: 'negative expectedVersion', body: ns({ namespace_id: 45, name: 'x45' }, { expectedVersion: -1 }), reason: /\/expectedVersion: must be/ },
  { what: 'metadata not an object', body: ns({ namespace_id: 46, name: 'x46' }, { metadata: 'from the server' }), reason: /\/metadata: must be an object/ },
  { what: 'schema version from the future', body: ns({ namespace_id: 47, name: 'x47' }, { metadata: { schema_version: 99 } }), reason: /\/metadata\/schema_version: must be at most 1/ },
  { what: 'recognised metadata key of the wrong type', body: ns({ namespace_id: 48, name: 'x48' }, { metadata: { user: 7 } }), reason: /\/metadata\/user: must be a string \(got 7\)/ },
  { what: 'published under another type', subjectType: 'BuildStarted', body: ns({ namespace_id: 49, name: 'x49' }), reason: /subject \S+\.events\.BuildStarted does not match the event type NamespaceCreated: publish it to \S+\.events\.NamespaceCreated/ },
  { what: 'subject with an extra token', subject: (names) => `${eventSubject(names, 'NamespaceCreated')}.v2`, body: ns({ namespace_id: 50, name: 'x50' }), reason: /subject \S+\.events\.NamespaceCreated\.v2 does not match the event type NamespaceCreated/ },
  { what: 'spec not an object', subjectType: 'SpecificationRegistered', body: JSON.stringify({ id: UUID(), type: 'SpecificationRegistered', stream: 'specification-9', data: { specification_id: 9, name: 's', spec: 'python=3.12', sha256: 'c'.repeat(64), is_lockfile: false } }), reason: /\/data\/spec: must be an object/ },
  { what: 'string longer than its column', subjectType: 'SpecificationRegistered', body: JSON.stringify({ id: UUID(), type: 'SpecificationRegistered', stream: 'specification-9', data: { specification_id: 9, name: 's', spec: {}, sha256: 'f'.repeat(300), is_lockfile: false } }), reason: /\/data\/sha256: must be at most 255 characters \(got 300\)/ },
  { what: 'a list that is not an array', subjectType: 'BuildPackagesRecorded', body: JSON.stringify({ id: UUID(), type: 'BuildPackagesRecorded', stream: 'build-1', data: { build_id: 1, conda_package_build_ids: 1001 } }), reason: /\/data\/conda_package_build_ids: must be an array/ },
  { what: 'empty id', body: ns({ namespace_id: 51, name: 'x51' }, { id: '' }), reason: /\/id: must be a UUID/ },
  { what: 'NUL character in the id', body: ns({ namespace_id: 52, name: 'x52' }, { id: 'a\u0000b' }), reason: /\/id: must be a UUID .*\(got "a\\u0000b"\)/ },
  { what: 'a raw NUL byte in the body', body: '{"id": "\u0000"}', reason: /not valid JSON: Bad control character in string literal/ },
  {
    what: 'a setting prefix too long for the stream index (the database refuses it: SQLSTATE 54000)',
    subjectType: 'SettingStored',
    body: JSON.stringify({ id: UUID(), type: 'SettingStored', stream: `keyvaluestore-${LONG_PREFIX}`, data: { id: 9, prefix: LONG_PREFIX, key: 'k', value: 1 } }),
    // The stream named by its start: the whole of it is in the message's stored body.
    reason: /^SettingStored on keyvaluestore-[0-9a-f]{86}\.\.\. \(8014 characters\): the database refused this event: index row size \d+ exceeds btree version 4 maximum 2704/,
  },
  // jsonb cannot store these: refused by validation, naming the place (they once reached the database).
  { what: 'NUL character in free-form JSON', body: ns({ namespace_id: 53, name: 'x53', metadata_: { note: 'a\u0000b' } }), reason: /^invalid event: NamespaceCreated: \/data\/metadata_\/note: must not contain NUL/ },
  { what: 'an unpaired surrogate in a name', body: ns({ namespace_id: 54, name: 'x54\ud800' }), reason: /^invalid event: NamespaceCreated: \/data\/name: must be valid Unicode: it contains a UTF-16 surrogate without its pair/ },
];

/** Messages that are valid events but that the log, as the history leaves it, must refuse. */
function refusedAfter(history: Envelope[]): CorpusEntry[] {
  const env = (type: string, data: Record<string, unknown>, extra: Record<string, unknown> = {}): CorpusEntry['body'] =>
    JSON.stringify({ ...envelopeFor(type as never, data as never), ...extra });
  const first = history[0]!;
  return [
    { what: 'duplicate namespace name', body: env('NamespaceCreated', { namespace_id: 60, name: 'default' }), reason: /duplicate namespace\.name: "default" is already taken by namespace-1/ },
    { what: 'wrong expected version', subjectType: 'NamespaceMetadataUpdated', body: env('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: {} }, { expectedVersion: 0 }), reason: /wrong expected version for stream namespace-1: expected 0, actual \d+/ },
    { what: 'an aggregate created twice', body: env('NamespaceCreated', { namespace_id: 2, name: 'other-name' }), reason: /wrong expected version for stream namespace-2: expected no_stream/ },
    { what: 'first event with a numeric expectedVersion', body: env('NamespaceCreated', { namespace_id: 61, name: 'fresh' }, { expectedVersion: 3 }), reason: /it starts the stream, so expectedVersion must be "no_stream" or absent, not 3/ },
    { what: 'build status out of order', subjectType: 'BuildStarted', body: env('BuildStarted', { build_id: 1, started_on: '2024-03-09T00:00:00Z' }), reason: /BuildStarted on build-1: the build is COMPLETED \(allowed: QUEUED\)/ },
    { what: 'current build of another environment', subjectType: 'EnvironmentCurrentBuildSet', body: env('EnvironmentCurrentBuildSet', { environment_id: 1, current_build_id: 4 }), reason: /build 4 is not a build of environment-1/ },
    { what: 'environment in a missing namespace', subjectType: 'EnvironmentCreated', body: env('EnvironmentCreated', { environment_id: 62, namespace_id: 99, name: 'orphan' }), reason: /namespace 99 does not exist/ },
    { what: 'build of a missing environment', subjectType: 'BuildScheduled', body: env('BuildScheduled', { build_id: 63, environment_id: 98, specification_id: 1, scheduled_on: '2024-03-09T00:00:00Z', build_key_version: 2 }), reason: /environment 98 does not exist/ },
    { what: 'an event id reused for other content', body: JSON.stringify({ ...first, data: { ...(first.data as object), name: 'renamed' } }), subjectType: first.type, reason: /already in the log with different content/ },
    { what: 'duplicate specification sha256', subjectType: 'SpecificationRegistered', body: env('SpecificationRegistered', { specification_id: 64, name: 'copy', spec: {}, sha256: 'a'.repeat(64), is_lockfile: false }), reason: /duplicate specification\.sha256/ },
    { what: 'duplicate package', subjectType: 'CondaPackageRegistered', body: env('CondaPackageRegistered', { package_id: 65, channel_id: 1, name: 'numpy', version: '1.26.4' }), reason: /duplicate conda_package/ },
    { what: 'purge of a namespace that has environments', subjectType: 'NamespacePurged', body: env('NamespacePurged', { namespace_id: 1 }), reason: /namespace-1 still has environments: purge them first/ },
    { what: 'event of a build that does not exist', subjectType: 'BuildStarted', body: env('BuildStarted', { build_id: 999, started_on: '2024-03-09T00:00:00Z' }), reason: /BuildStarted on build-999: the build is unknown/ },
    { what: 'a specification named otherwise than its spec', subjectType: 'SpecificationRegistered', body: env('SpecificationRegistered', { specification_id: 66, name: 'other', spec: { name: 'python-data' }, sha256: 'd'.repeat(64), is_lockfile: false }), reason: /SpecificationRegistered on specification-66: name must be the spec's name, "python-data" \(got "other"\)/ },
    { what: 'a build key hash with build_key_version 2', subjectType: 'BuildScheduled', body: env('BuildScheduled', { build_id: 67, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-09T00:00:00Z', build_key_version: 2, hash: '5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b' }), reason: /hash must be absent or null with build_key_version 2/ },
    { what: 'build_key_version 3 without its hash', subjectType: 'BuildScheduled', body: env('BuildScheduled', { build_id: 68, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-09T00:00:00Z', build_key_version: 3 }), reason: /hash is required with build_key_version 3/ },
  ];
}

test.serial('malformed and refused messages mixed into valid traffic: each is stored with its reason; every valid event goes in', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const history = realisticHistory();
  const trailing = [
    envelopeFor('NamespaceCreated', { namespace_id: 10, name: 'late-team' }),
    envelopeFor('EnvironmentCreated', { environment_id: 10, namespace_id: 10, name: 'late-env' }),
    envelopeFor('SettingStored', { id: 10, prefix: 'setting/late-team', key: 'conda_allowed_channels', value: ['conda-forge'] }),
  ];
  const refused = refusedAfter(history);
  const corpus = [...MALFORMED, ...refused];
  t.true(corpus.length >= 30, `${corpus.length} kinds`);
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 8 });

  const sent: { entry: CorpusEntry; sequence: number }[] = [];
  const send = async (entry: CorpusEntry) => {
    const subject = entry.subject?.(nats.names) ?? eventSubject(nats.names, entry.subjectType ?? 'NamespaceCreated');
    const ack = await publishRaw(nats.nc, subject, entry.body, { headers: { 'X-Producer': 'corpus-test' } });
    sent.push({ entry, sequence: ack.seq });
  };
  // The malformed ones between the history's events; the refused ones once the history is in,
  // followed by more valid events (one bad message blocks nothing).
  let m = 0;
  for (const envelope of history) {
    await publishEvent(nats.nc, envelope, { names: nats.names });
    if (m < MALFORMED.length) await send(MALFORMED[m++]!);
  }
  while (m < MALFORMED.length) await send(MALFORMED[m++]!);
  await waitUntil(() => ingester.totals().messages >= history.length + MALFORMED.length, 'the history and the malformed messages ingested');
  for (const entry of refused) await send(entry);
  await publishEvents(nats.nc, trailing, { names: nats.names });
  const total = history.length + corpus.length + trailing.length;
  await waitUntil(() => ingester.totals().messages >= total, 'every message ingested');

  const valid = [...history, ...trailing];
  const validIds = new Set(valid.map((e) => e.id));
  const appendedIds = new Set(ingester.reports.flatMap((r) => r.appended.map((e) => e.id)));
  for (const { entry } of sent) {
    const id = typeof entry.body === 'string' ? /"id":"([^"]+)"/.exec(entry.body)?.[1] : undefined;
    if (id && appendedIds.has(id) && !validIds.has(id)) t.fail(`${entry.what}: appended`);
  }
  t.like(ingester.totals(), { messages: total, appended: valid.length, duplicates: 0, rejected: corpus.length });
  await assertExactlyOnce(t, db, valid);

  const rows = await db.query<{ subject: string; headers: Record<string, string[]>; body: Buffer; body_text: string | null; reason: string; stream_sequence: string; received_at: Date }>(
    'SELECT subject, headers, body, body_text, reason, stream_sequence, received_at FROM event_store.rejected_messages ORDER BY stream_sequence',
  );
  t.is(rows.length, corpus.length);
  for (const { entry, sequence } of sent) {
    const row = rows.find((r) => Number(r.stream_sequence) === sequence);
    if (!row) {
      t.fail(`${entry.what}: no rejected_messages row`);
      continue;
    }
    if (!entry.reason.test(row.reason)) t.log(`${entry.what}: ${row.reason}`);
    t.regex(row.reason, entry.reason, entry.what);
    const body = typeof entry.body === 'string' ? Buffer.from(entry.body) : Buffer.from(entry.body);
    t.true(row.body.equals(body), `${entry.what}: the raw body is kept`);
    t.is(row.body_text, entry.what === 'not UTF-8' ? null : body.toString('utf8').replaceAll('\u0000', '\uFFFD'), `${entry.what}: the body as text (NUL, which text cannot hold, as U+FFFD)`);
    t.is(row.subject, entry.subject?.(nats.names) ?? eventSubject(nats.names, entry.subjectType ?? 'NamespaceCreated'));
    t.deepEqual(row.headers['X-Producer'], ['corpus-test'], `${entry.what}: headers kept`);
    t.true(row.received_at instanceof Date);
  }
  await assertStats(t, db, { accepted: valid.length, duplicates: 0, rejected: corpus.length });

  // `status` counts them. The last batch's ack reaches NATS a moment after its figures are saved
  // (a CI run saw 1 awaiting ack): read the status until it has, then check all of it.
  const readStatus = () => runCli(['status'], { env: { DATABASE_URL: db.url, ...nats.env } });
  let status = await readStatus();
  await waitUntil(async () => /consumer lag: 0 /.test(status.stdout) || /consumer lag: 0 /.test((status = await readStatus()).stdout), 'the last ack to reach NATS');
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, new RegExp(`messages accepted: ${valid.length}, duplicates: 0, rejected: ${corpus.length}`));
  t.regex(status.stdout, new RegExp(`last stream sequence handled: ${valid.length + corpus.length}\n`));
  t.regex(status.stdout, /consumer lag: 0 /);

  await catchUp(db.url, db.log);
  t.deepEqual(await tableDigests(db.url), await referenceDigests(t, valid));
});

// ---------------------------------------------------------------------------------------------
// Failures: database outage, crash, shutdown

const volume = generatedHistory({ namespaces: 4, environmentsPerNamespace: 3, buildsPerEnvironment: 3, packages: 100, packageBuildsPerPackage: 4, seed: 'ingest' });
let volumeDigests: ReturnType<typeof referenceDigests> | undefined;
/** The reference tables of `volume`, computed once for the tests that use it. */
const referenceOfVolume = (t: ExecutionContext) => (volumeDigests ??= referenceDigests(t, volume));

/** A build QUEUED in the log, and its BuildCompleted (refused: the build is QUEUED) and BuildStarted. */
async function queuedBuild(db: TestLog) {
  await appendEnvelopes(db.log, [
    envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'default' }),
    envelopeFor('SpecificationRegistered', { specification_id: 1, name: 'py', spec: { name: 'py', dependencies: ['python'] }, sha256: 'a'.repeat(64), created_on: '2024-03-02T10:00:00Z', is_lockfile: false }),
    envelopeFor('EnvironmentCreated', { environment_id: 1, namespace_id: 1, name: 'py' }),
    envelopeFor('BuildScheduled', { build_id: 1, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-02T10:00:00Z', build_key_version: 2 }),
  ]);
  return {
    completed: envelopeFor('BuildCompleted', { build_id: 1, ended_on: '2024-03-02T10:05:00Z' }),
    started: envelopeFor('BuildStarted', { build_id: 1, started_on: '2024-03-02T10:00:01Z' }),
  };
}

const streamTypes = async (db: TestLog, stream: string) => (await db.log.readStream(stream)).map((e) => e.type);

// Regression: a batch's rejected messages were stored after its appends. When storing them failed
// (or the process stopped) after the append had committed, they were decided again when the batch
// came back, against a log that now held the messages after them: a BuildCompleted refused on a
// QUEUED build went in after the BuildStarted behind it, out of its place in the stream's order.
test.serial('a refused message is stored before anything behind it is appended: while it cannot be, the batch waits', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const { completed, started } = await queuedBuild(db);
  // Every rejected message fails to be stored, for now.
  await db.query('ALTER TABLE event_store.rejected_messages ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
  await publishEvents(nats.nc, [completed, started], { names: nats.names });
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 8, retryDelayMs: { initial: 50, max: 200 } });
  await waitUntil(() => ingester.retries >= 2, 'the batch to fail twice on the refusal it cannot store');
  t.deepEqual(await streamTypes(db, 'build-1'), ['BuildScheduled']);
  await db.query('ALTER TABLE event_store.rejected_messages DROP CONSTRAINT refuse_all');
  await waitUntil(() => ingester.totals().messages >= 2, 'the batch to go through');

  t.deepEqual(await streamTypes(db, 'build-1'), ['BuildScheduled', 'BuildStarted']);
  const rows = await db.query<{ event_id: string; reason: string }>('SELECT event_id, reason FROM event_store.rejected_messages');
  t.deepEqual(rows, [{ event_id: completed.id, reason: 'BuildCompleted on build-1: the build is QUEUED (allowed: BUILDING)' }]);
});

// Regression: the same window through the log. An environment of a namespace that did not exist
// yet was refused, the namespace behind it appended, and the batch failed before the refusal was
// stored (here: the connection lost after the namespace's append committed). Decided again, the
// environment went in, after its namespace, though it had come first.
test.serial('a refused message keeps its verdict when its batch fails after a later message of it was appended', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const environment = envelopeFor('EnvironmentCreated', { environment_id: 1, namespace_id: 9, name: 'early' });
  const namespace = envelopeFor('NamespaceCreated', { namespace_id: 9, name: 'late' });
  // The first append fails before it reaches the database, so that both messages come back in
  // one batch (the first delivery may have brought the environment alone).
  let refused = false;
  let cut = false;
  const lost = (when: string) => Object.assign(new Error(`Connection terminated unexpectedly (${when})`), { code: 'ECONNRESET' });
  const log: EventLog = {
    ...db.log,
    async append(requests, options) {
      if (!refused) {
        refused = true;
        throw lost('before the append');
      }
      const appended = await db.log.append(requests, options);
      if (!cut && appended.some((event) => event.id === namespace.id)) {
        cut = true;
        throw lost('after the commit');
      }
      return appended;
    },
  };
  await publishEvents(nats.nc, [environment, namespace], { names: nats.names });
  const ingester = runIngester(t, { nc: nats.nc, log, databaseUrl: db.url, names: nats.names, batchSize: 8, retryDelayMs: { initial: 50, max: 200 } });
  await waitUntil(() => ingester.totals().messages >= 2, 'the batch to go through');

  t.true(cut);
  t.deepEqual(await streamTypes(db, 'namespace-9'), ['NamespaceCreated']);
  t.deepEqual(await streamTypes(db, 'environment-1'), []);
  t.like(ingester.totals(), { appended: 0, duplicates: 1, rejected: 1 });
  const rows = await db.query<{ event_id: string }>('SELECT event_id FROM event_store.rejected_messages');
  t.deepEqual(rows, [{ event_id: environment.id }]);
  // Counted when its row was stored, though the batch then failed (regression: the count went
  // with the batch's, and the redelivery's row was there already: rejected 0).
  await assertStats(t, db, { accepted: 0, duplicates: 1, rejected: 1 });
});

/** The log with its appends held while hold() is in force: a batch stays in flight until release(). */
function holdingLog(log: EventLog) {
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  let waiting = 0;
  const held: EventLog = {
    ...log,
    async append(requests, options) {
      while (gate) {
        waiting += 1;
        await gate.promise;
        waiting -= 1;
      }
      return log.append(requests, options);
    },
  };
  return {
    log: held,
    hold() {
      let open!: () => void;
      const promise = new Promise<void>((resolve) => (open = resolve));
      gate = { promise, open };
    },
    release() {
      const was = gate;
      gate = undefined;
      was?.open();
    },
    waiting: () => waiting,
  };
}

// Regression (found in review): a stopping ingester (or one whose lock was lost, another process
// owning ingestion by then) went on through every message it held after its batch in flight.
test.serial('stopped while a batch is in flight, the ingester finishes that batch and takes no other; the next owner takes the rest', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const held = holdingLog(db.log);
  held.hold();
  const events = Array.from({ length: 30 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  await publishEvents(nats.nc, events, { names: nats.names });
  const first = runIngester(t, { nc: nats.nc, log: held.log, databaseUrl: db.url, names: nats.names, batchSize: 5 });
  await waitUntil(() => held.waiting() === 1, 'a batch in flight');
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending >= 20, 'more messages held behind it');
  const stopping = first.stop();
  held.release();
  await stopping;
  t.is(first.reports.length, 1, 'the batch in flight, and nothing after it');
  t.is(await logCount(db), first.reports[0]!.messages);

  const next = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 5 });
  await waitUntil(() => next.totals().messages >= 30 - first.reports[0]!.messages, 'the rest');
  await assertExactlyOnce(t, db, events);
});

// Regression: the known limit of 2026-12-07. An ingester whose lock's connection was lost while it
// lived finished its batch in flight, and appended it after another process had taken ingestion
// over and started deciding those same messages (here held back before its first append, so that
// the old owner's append comes after the take-over). Now the new owner raises the ingestion's
// fence when it takes over, and the old owner's append, made with the old hold, writes nothing.
test.serial('an ingester that lost its lock while its batch was in flight writes nothing once another has taken ingestion over', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const events = Array.from({ length: 30 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  await publishEvents(nats.nc, events, { names: nats.names });
  const records: { msg: string; err?: { type?: string } }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as (typeof records)[number]) });
  const old = holdingLog(db.log);
  old.hold();
  const first = runIngester(t, { nc: nats.nc, log: old.log, databaseUrl: db.url, names: nats.names, batchSize: 5, logger, retryDelayMs: { initial: 50, max: 50 } });
  await waitUntil(() => old.waiting() === 1, 'a batch in flight');
  const next = holdingLog(db.log);
  next.hold();
  const second = runIngester(t, { nc: nats.nc, log: next.log, databaseUrl: db.url, names: nats.names, batchSize: 5 });
  const ownerLock = "FROM pg_locks WHERE locktype = 'advisory' AND classid = 7403 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
  const [owner] = await db.query<{ pid: number }>(`SELECT pid ${ownerLock}`);
  await db.query('SELECT pg_terminate_backend($1)', [owner!.pid]);
  const epoch = async () => (await db.query<{ epoch: string }>('SELECT epoch FROM event_store.fences'))[0]?.epoch;
  await waitUntil(async () => (await epoch()) === '2', 'the second ingester to take over');

  old.release();
  const stopped = () => records.some((r) => r.msg === 'another process has taken ingestion over: this session stops, nothing more of its batch is written');
  await waitUntil(() => stopped() || first.reports.length > 0, 'the first ingester\'s batch to end');
  t.true(stopped(), 'the first ingester stopped');
  t.is(first.reports.length, 0, 'no batch of the first ingester went through');
  t.is(await logCount(db), 0, 'nothing written by the ingester that lost its lock');
  t.is((await db.query('SELECT 1 FROM event_store.rejected_messages')).length, 0);

  next.release();
  await waitUntil(() => second.totals().messages >= events.length, 'the second ingester to take every message');
  await assertExactlyOnce(t, db, events);
  const order = await db.query<{ id: string }>('SELECT id::text FROM event_store.events ORDER BY global_position');
  t.deepEqual(order.map((r) => r.id), events.map((e) => e.id), 'in the stream\'s order');
  t.is(await epoch(), '2', 'the first ingester waits for the lock, and has not taken it back');
});

// Regression (found in review): a callback that threw failed the session; the next session started,
// and the failed one's fetch loop went on, naking all it fetched, one more loop for every batch.
test.serial('an onBatch or onRetry callback that throws is logged; the session goes on, and no fetch loop is left behind', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const records: { msg: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void records.push(JSON.parse(line) as { msg: string }) });
  // The first append fails (its onRetry throws); every batch after it goes in (its onBatch throws).
  let first = true;
  const log: EventLog = {
    ...db.log,
    async append(requests, options) {
      if (first) {
        first = false;
        throw Object.assign(new Error('a failure of unknown cause'), { code: 'P0001' });
      }
      return db.log.append(requests, options);
    },
  };
  const events = Array.from({ length: 40 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  await publishEvents(nats.nc, events.slice(0, 5), { names: nats.names });
  const ingester = runIngester(t, {
    nc: nats.nc, log, databaseUrl: db.url, names: nats.names, batchSize: 5, logger,
    retryDelayMs: { initial: 50, max: 50 },
    onBatch: () => { throw new Error('a metrics bug'); },
    onRetry: () => { throw new Error('another metrics bug'); },
  });
  await waitUntil(() => ingester.totals().messages >= 5, 'the first batch, after its failure');
  for (let i = 5; i < events.length; i += 5) await publishEvents(nats.nc, events.slice(i, i + 5), { names: nats.names });
  await waitUntil(() => ingester.totals().messages >= events.length, 'every event ingested');
  await assertExactlyOnce(t, db, events);
  t.is(ingester.retries, 1);
  t.true(records.some((r) => r.msg === 'the onRetry callback threw; ingestion goes on'));
  t.true(records.some((r) => r.msg === 'the onBatch callback threw; ingestion goes on'));
  t.false(records.some((r) => r.msg === 'ingestion interrupted; resuming'), 'no session failed');
  // One session, one fetch at a time: a fetch loop left behind would keep pull requests waiting too.
  // (Waited for: a fetch whose heartbeats came late sends its pull request again, and both are
  // counted a moment; a loop left behind keeps its own waiting for good.)
  await waitUntil(async () => (await nats.jsm.consumers.info(nats.names.stream, nats.names.durable)).num_waiting <= 1, 'one pull request waiting at most');
});

/**
 * A login role of the test's own that may read and write every table of event_store but
 * `revoked` (e.g. 'UPDATE ON event_store.fences'), and the test database's URL as that role.
 */
async function ingesterRole(t: ExecutionContext, db: TestLog, revoked: string): Promise<{ role: string; url: URL }> {
  const role = `cse_test_ingester_${randomBytes(4).toString('hex')}`;
  const name = new URL(db.url).pathname.slice(1);
  await db.query(`CREATE ROLE ${role} LOGIN; GRANT CONNECT ON DATABASE "${name}" TO ${role};
                  GRANT USAGE ON SCHEMA event_store TO ${role}; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA event_store TO ${role};
                  REVOKE ${revoked} FROM ${role}`);
  t.teardown(() => db.query(`DROP OWNED BY ${role}; DROP ROLE ${role}`).catch(() => undefined));
  const url = new URL(db.url);
  url.username = role;
  return { role, url };
}

// The retry delay starts over only once a session has shown that it works (c394f7f: reset as soon
// as ownership was taken, a session failing at its start was retried every 250 ms for ever).
test.serial('a session that fails at its start backs off, each failure waiting longer; once one has handled a batch, the next failure waits the first delay again', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  // A role that may do all the ingester does but read the stored rejections, which a session reads first.
  const { role, url } = await ingesterRole(t, db, 'SELECT ON event_store.rejected_messages');
  const records: { msg: string; delayMs?: number }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as (typeof records)[number]) });
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: url.toString(), names: nats.names, logger, retryDelayMs: { initial: 20, max: 160 } });
  const delays = () => records.filter((r) => r.msg === 'ingestion interrupted; resuming').map((r) => r.delayMs);
  await waitUntil(() => delays().length >= 6, 'six sessions failing at their start');
  t.deepEqual(delays().slice(0, 6), [20, 40, 80, 160, 160, 160]);

  // Allowed again: a session handles a batch.
  await db.query(`GRANT SELECT ON event_store.rejected_messages TO ${role}`);
  await publishEvents(nats.nc, [envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'one' })], { names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 1, 'a batch handled');
  // The stream deleted and created again under it ends that session: the next delay is the first.
  const before = delays().length;
  await nats.jsm.streams.delete(nats.names.stream);
  await ensureIngestion(nats.nc, nats.names);
  await waitUntil(() => delays().length > before, 'the session ended');
  t.is(delays()[before], 20);
});

// Regression (found in review): while the next message in order was away (its batch failing, handed
// back with a delay each time), the ingester fetched every later message it could, up to the
// consumer's max_ack_pending (20,000).
test.serial('while a failing message holds the others up, the ingester holds at most twice its buffer', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const events = Array.from({ length: 120 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  const failing = events[0]!;
  const log: EventLog = {
    ...db.log,
    async append(requests, options) {
      if ([requests].flat().some((request) => request.events.some((event) => event.id === failing.id))) {
        throw Object.assign(new Error('a failure of unknown cause'), { code: 'P0001' });
      }
      return db.log.append(requests, options);
    },
  };
  await publishEvents(nats.nc, events, { names: nats.names });
  const ingester = runIngester(t, { nc: nats.nc, log, databaseUrl: db.url, names: nats.names, batchSize: 5, retryDelayMs: { initial: 10, max: 20 } });
  await waitUntil(() => ingester.retries >= 4, 'the first message to fail again and again');
  // Buffer 20 (four batches), twice that at most while blocked, and the batch in flight.
  // Twice the buffer, a fetch's batch past it (fetched while the buffer held one less), and the
  // failing batch's messages nak'ed and waiting for their redelivery: far from the 20,000 before.
  t.true((await consumerFigures(nats.jsm, nats.names)).ackPending <= 2 * 20 + 2 * 5);
  t.is(await logCount(db), 0);
});

// A message whose batch fails with an error not known to be its own (here a code of PL/pgSQL's
// RAISE) must not hold up the messages before it. (Redeliveries often come back one by one and cut
// the runs anyway; the ingester now also halves a run after two failures in a row, so that a
// batch redelivered whole is cut too. This test does not tell the two apart.)
// Regression (found by a review): halved with a shift, the batch came back whole after 32
// failures in a row (a shift counts modulo 32), in a database outage of some minutes.
test('a batch is halved from the second failure in a row down to one message, however many failures follow', (t) => {
  t.deepEqual([0, 1, 2, 3, 9, 10, 32, 33, 64, 1000].map((failures) => batchLimit(500, failures)), [500, 500, 250, 125, 1, 1, 1, 1, 1, 1]);
});

test.serial('a batch that keeps failing is halved until the messages before the one that fails it go in', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const events = Array.from({ length: 10 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  const poison = events[7]!;
  // The first append fails too, whatever it holds: its messages come back after the retry delay,
  // by when all ten are held, and the batch is all ten (however the first delivery was cut).
  let first = true;
  const log: EventLog = {
    ...db.log,
    async append(requests, options) {
      const failsNow = first;
      first = false;
      if (failsNow || [requests].flat().some((request) => request.events.some((event) => event.id === poison.id))) {
        throw Object.assign(new Error('a failure of unknown cause'), { code: 'P0001' });
      }
      return db.log.append(requests, options);
    },
  };
  await publishEvents(nats.nc, events, { names: nats.names });
  const ingester = runIngester(t, { nc: nats.nc, log, databaseUrl: db.url, names: nats.names, batchSize: 10, retryDelayMs: { initial: 300, max: 300 } });
  await waitUntil(async () => (await logCount(db)) === 7, 'the seven messages before the failing one');
  t.is(ingester.totals().appended, 7);
  t.is(await rejectedCount(db), 0, 'nothing rejected for an error that is not the message\'s');
  t.true(ingester.retries >= 3);
});

// Regression (found in review): a stream deleted and created again while the ingester's reader
// waited for room (a batch in flight, the buffer full) went unnoticed: the new stream's messages,
// numbered from 1 again, were at or below the floor and acked as handled, never appended.
test.serial('a stream deleted and created again under a running ingester: its new messages are appended, not taken for handled ones', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const held = holdingLog(db.log);
  const ingester = runIngester(t, { nc: nats.nc, log: held.log, databaseUrl: db.url, names: nats.names, batchSize: 5 });
  await publishEvents(nats.nc, [1, 2, 3].map((id) => envelopeFor('NamespaceCreated', { namespace_id: id, name: `ns-${id}` })), { names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 3, 'the first three (the floor at 3)');
  held.hold();
  await publishEvents(nats.nc, Array.from({ length: 25 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 4, name: `ns-${i + 4}` })), { names: nats.names });
  await waitUntil(() => held.waiting() === 1, 'a batch in flight');
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending >= 20, 'the buffer full: the reader waits for room');
  await nats.jsm.streams.delete(nats.names.stream);
  await ensureIngestion(nats.nc, nats.names);
  const renewed = [100, 101].map((id) => envelopeFor('NamespaceCreated', { namespace_id: id, name: `new-${id}` }));
  const published = await publishEvents(nats.nc, renewed, { names: nats.names });
  t.deepEqual(published.map((p) => p.sequence), [1, 2], 'numbered from 1 again, below the floor');
  held.release();
  await waitUntil(async () => (await db.log.readStream('namespace-101')).length === 1, 'the new stream\'s messages appended');
  t.is((await db.log.readStream('namespace-100')).length, 1);
  // status names the new stream's last sequence (regression: the counters kept the greatest
  // sequence ever handled, the old stream's, until the new one passed it).
  await ingester.stop(); // writes the last counts
  const status = await readIngestionStatus(testPool(t, db.url, 1), natsUrl, nats.names, { timeoutMs: 5000 });
  t.is(status.lastSequence, 2);
  // Within a millisecond: PostgreSQL keeps microseconds (rounded), a Date milliseconds (cut).
  const created = Date.parse((await nats.jsm.streams.info(nats.names.stream)).created);
  t.true(Math.abs(Date.parse(status.streamCreated!) - created) <= 1, `${status.streamCreated} for a stream created ${new Date(created).toISOString()}`);
});

// The other half of the same rule: a previous owner stored a message's rejection and died before
// its ack. Redelivered to the next owner, the message keeps the verdict stored then. Regression
// (found by a review): with the consumer deleted and created meanwhile (as serve's error about a
// consumer it cannot use says to do), the message came anew, not marked as redelivered, and was
// decided again.
for (const consumerCreatedAgain of [false, true]) {
  test.serial(`a redelivered message whose rejection a previous owner stored keeps that verdict, whatever the log holds now${consumerCreatedAgain ? ' (the consumer deleted and created meanwhile)' : ''}`, async (t) => {
    const db = await testLog(t);
    const nats = await testNats(t, { create: true });
    const { completed, started } = await queuedBuild(db);
    await db.query('ALTER TABLE event_store.rejected_messages ADD CONSTRAINT refuse_all CHECK (false) NOT VALID');
    const [rejected] = await publishEvents(nats.nc, [completed, started], { names: nats.names });
    // The first owner receives both, cannot store the refusal, and stops (its messages go back to
    // JetStream, to be redelivered).
    const first = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 8, retryDelayMs: { initial: 50, max: 200 } });
    await waitUntil(() => first.retries >= 1, 'the first owner to try the batch');
    await first.stop();
    await db.query('ALTER TABLE event_store.rejected_messages DROP CONSTRAINT refuse_all');
    // As that owner would have left things had it stored the refusal, appended the BuildStarted and
    // died before its acks.
    const stored = fromStream(await nats.jsm.streams.getMessage(nats.names.stream, { seq: rejected!.sequence }), nats.names.stream);
    await storeRejections(testPool(t, db.url, 1), [{ parsed: { msg: stored, eventId: completed.id, eventType: completed.type }, reason: 'refused by the previous owner' }]);
    await appendEnvelopes(db.log, [started]);
    if (consumerCreatedAgain) await nats.jsm.consumers.delete(nats.names.stream, nats.names.durable); // the next owner creates it

    const next = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, batchSize: 8 });
    await waitUntil(() => next.totals().messages >= 2, 'the redeliveries to be handled');
    t.deepEqual(await streamTypes(db, 'build-1'), ['BuildScheduled', 'BuildStarted']);
    t.like(next.totals(), { appended: 0, duplicates: 1, rejected: 1 });
    t.deepEqual(await db.query('SELECT reason FROM event_store.rejected_messages'), [{ reason: 'refused by the previous owner' }]);
  });
}

// Regression: a batch's rejected messages went in one INSERT of ten parameters a row; past 6,553
// rows the protocol's 16-bit count of parameters wrapped, the server refused the statement (08P01,
// taken for a lost connection) and the batch came back for ever, blocking every message behind it.
test('7,000 rejected messages are stored in one statement, each as received (binary bodies and quotes included), once', async (t) => {
  const db = await testLog(t);
  const pool = testPool(t, db.url, 1);
  const bodies = Array.from({ length: 7000 }, (_, i): Uint8Array =>
    i % 2 ? new Uint8Array([0xff, 0xfe, 0x00, i % 256]) : new TextEncoder().encode(`{"a": "quote \\" and backslash \\\\", "i": ${i}} {},NULL`));
  const rejections = bodies.map((data, i) => {
    const stored = { subject: `events.weird "subject", ${i}`, seq: i + 1, data, header: undefined, timestamp: '2026-12-06T10:00:00.123456789Z' };
    return { parsed: { msg: fromStream(stored as unknown as StoredMsg, 'STREAM'), eventId: i % 3 ? undefined : `id "${i}"` }, reason: `bad, "very" {bad} \\ ${i}` };
  });
  t.is(await storeRejections(pool, rejections), 7000);
  t.is(await storeRejections(pool, rejections), 0, 'a redelivery lands on the existing rows');
  const rows = await db.query<{ subject: string; body: Buffer; body_text: string | null; reason: string; stream_sequence: string; event_id: string | null; stored_at: string }>(
    `SELECT subject, body, body_text, reason, stream_sequence, event_id, to_char(stored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS stored_at
     FROM event_store.rejected_messages ORDER BY stream_sequence`,
  );
  t.is(rows.length, 7000);
  for (const i of [0, 1, 2, 3, 6999]) {
    const row = rows[i]!;
    t.is(row.subject, `events.weird "subject", ${i}`);
    t.deepEqual(new Uint8Array(row.body), bodies[i]);
    t.is(row.body_text, i % 2 ? null : new TextDecoder().decode(bodies[i]));
    t.is(row.reason, `bad, "very" {bad} \\ ${i}`);
    t.is(row.event_id, i % 3 ? null : `id "${i}"`);
    t.is(row.stored_at, '2026-12-06T10:00:00.123456');
  }
});

// A role that may not raise the ingestion's fence (granted on event_store's tables before the
// fences came, say) stops the ingester with the error, as a refused lock does (serve exits 2),
// rather than have it retry for ever with a warning.
test.serial('an ingester whose role may not raise the ingestion fence stops with the error', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const { url } = await ingesterRole(t, db, 'UPDATE ON event_store.fences');
  const log = createPostgresEventLog({ connectionString: url.toString() });
  t.teardown(() => log.close());
  const ingester = createIngester({ nc: nats.nc, log, databaseUrl: url.toString(), names: nats.names, logger: silentLogger });
  const error = await t.throwsAsync(ingester.run(new AbortController().signal));
  t.regex(error!.message, /permission denied for table fences/);
  t.is((await db.query(`SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 7403 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)).length, 0, 'the ingestion lock given back');
});

// The raise is the session's first write, made on the lock's own connection: a database lost at
// that moment is waited out like any other loss, and the lock is given back meanwhile (the next
// attempt, on a new connection, takes it). Regression (a review of the eighth session of
// 2026-12-07): raised through the log's pool, a raise still waiting when the lock was lost went
// on, and could commit after the next owner's, fencing that owner off. Here it waits behind a
// holder of the fence; the lock's session is ended meanwhile; the raise must end with it.
test.serial('a fence raise whose lock is lost meanwhile never commits; the ingester takes the lock again, raises, and ingestion goes on', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const fence = `ingest:${nats.names.stream}/${nats.names.durable}`;
  await db.log.raiseFence(fence); // epoch 1: the row the holder below locks
  const holder = await connectPg(t, db.url);
  await holder.query('BEGIN');
  await holder.query('SELECT 1 FROM event_store.fences WHERE name = $1 FOR SHARE', [fence]);
  const records: { msg: string }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as { msg: string }) });
  const events = Array.from({ length: 10 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  await publishEvents(nats.nc, events, { names: nats.names });
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: db.url, names: nats.names, logger, retryDelayMs: { initial: 50, max: 50 } });
  const raising = async () =>
    db.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%raise_fence%'`);
  await waitUntil(async () => (await raising()).length === 1, 'the raise to wait for the holder');
  const [lock] = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7403 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
  );
  // Ended, and waited for until it has: the raise, if it ran elsewhere, would go on.
  await db.query('SELECT pg_terminate_backend($1)', [lock!.pid]);
  await waitUntil(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [lock!.pid])).length === 0, 'the lock\'s session to end');
  await holder.query('COMMIT');
  await waitUntil(() => ingester.totals().messages >= events.length, 'every event ingested');
  await assertExactlyOnce(t, db, events);
  t.deepEqual(await db.query('SELECT epoch::int FROM event_store.fences WHERE name = $1', [fence]), [{ epoch: 2 }], 'the raise of the lost lock never committed; the next one did');
  t.false(ingester.totals().messages > events.length);
  t.true(records.some((r) => /lost|unavailable/.test(r.msg)), JSON.stringify(records));
});

// The rejected messages of an ingester that lost its job are not stored either (the fence of the
// test above, on the ingester's other write).
test('rejected messages are stored with the current hold of the ingestion fence; with an older one, nothing is stored (FencedError)', async (t) => {
  const db = await testLog(t);
  const pool = testPool(t, db.url, 1);
  const rejection = (seq: number) => {
    const stored = { subject: 'events.bad', seq, data: new TextEncoder().encode('not json'), header: undefined, timestamp: '2026-12-07T10:00:00Z' };
    return { parsed: { msg: fromStream(stored as unknown as StoredMsg, 'STREAM') }, reason: 'not JSON' };
  };
  const old = await db.log.raiseFence('ingest:STREAM/durable');
  const current = await db.log.raiseFence('ingest:STREAM/durable');
  t.is(await storeRejections(pool, [rejection(1)], current), 1);
  const error = await t.throwsAsync(storeRejections(pool, [rejection(2), rejection(3)], old), { instanceOf: FencedError });
  t.like(error, { fence: 'ingest:STREAM/durable', held: 1, current: 2 });
  t.deepEqual(await db.query('SELECT stream_sequence::int FROM event_store.rejected_messages'), [{ stream_sequence: 1 }]);
});

test.serial('database outage during ingestion: nothing lost, nothing rejected, ingestion resumes by itself', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const target = new URL(serverUrl);
  const proxy = await tcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) });
  const proxiedUrl = proxy.urlThrough(db.url);
  // The ingester and the projections reach PostgreSQL only through the proxy.
  const log = createPostgresEventLog({ connectionString: proxiedUrl, onError: () => undefined });
  const projections = createProjectionService({ databaseUrl: proxiedUrl, log, logger: silentLogger, projections: condaStoreProjections });
  const stopProjections = new AbortController();
  const projecting = projections.serve(stopProjections.signal);
  void projecting.catch(() => undefined); // awaited at teardown
  t.teardown(async () => {
    stopProjections.abort();
    await projecting.catch(() => undefined);
    await projections.close();
    await log.close();
  });
  const ingester = runIngester(t, { nc: nats.nc, log, databaseUrl: proxiedUrl, names: nats.names, batchSize: 25, retryDelayMs: { initial: 100, max: 1000 } });

  const publishing = publishEvents(nats.nc, volume, { names: nats.names });
  void publishing.catch(() => undefined); // awaited below; handled now in case a wait fails first
  await waitUntil(async () => (await logCount(db)) >= 150, 'ingestion under way');
  proxy.cut();
  const atCut = await logCount(db);
  // While the database is away, messages wait in JetStream (nothing is acked, nothing rejected).
  await publishing;
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).pending > 0, 'messages waiting in JetStream');
  t.true((await logCount(db)) < volume.length, 'ingestion stalled while the database was cut off');
  t.log(`cut at ${atCut} events; ${proxy.dropped} connections dropped; ${ingester.retries} batches nak'ed`);
  proxy.restore();

  await waitUntil(async () => (await logCount(db)) >= volume.length, 'ingestion resumed and complete', { timeoutMs: 60_000 });
  await waitUntil(() => projectionsCaughtUp(db), 'projections resumed and caught up', { timeoutMs: 60_000 });
  await assertExactlyOnce(t, db, volume);
  t.is(await rejectedCount(db), 0, 'nothing rejected because of the outage');
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending === 0, 'every message acked');
  t.like(await consumerFigures(nats.jsm, nats.names), { pending: 0, ackPending: 0 });
  t.deepEqual(await tableDigests(db.url), await referenceOfVolume(t));
});

// Regression: stopped while NATS was down, runIngestion's drain ended without closing the
// connection, whose reconnect timers then kept a process that embeds it (not the CLI, which calls
// process.exit) running for ever.
// Regression (found in review): a stop while the database did not answer (a network cut, no reset)
// waited on the last figures' write and on the lock's release until the keepalives gave up.
test.serial('a stop while the database does not answer (a network cut) ends within a bound, saying what was not written', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: true });
  const target = new URL(serverUrl);
  const proxy = await tcpProxy(t, { host: target.hostname, port: Number(target.port || 5432) });
  const records: { msg: string }[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void records.push(JSON.parse(line) as { msg: string }) });
  // The log reaches the database directly; the ingester's lock, rejections and figures through the proxy.
  const ingester = runIngester(t, { nc: nats.nc, log: db.log, databaseUrl: proxy.urlThrough(db.url), names: nats.names, logger });
  const events = Array.from({ length: 25 }, (_, i) => envelopeFor('NamespaceCreated', { namespace_id: i + 1, name: `ns-${i + 1}` }));
  await publishEvents(nats.nc, events.slice(0, 20), { names: nats.names });
  await waitUntil(() => ingester.totals().messages >= 20, 'the first events ingested');
  proxy.partition();
  // Appended (the log is not behind the proxy): their figures are to be written through it.
  await publishEvents(nats.nc, events.slice(20), { names: nats.names });
  await waitUntil(() => ingester.totals().messages >= events.length, 'every event ingested');
  // A bound on a wait that lasted until the keepalives gave up before the fix, not a timing.
  t.true(await settlesWithin(ingester.stop(), 60_000), 'the stop ended');
  t.true(records.some((r) => r.msg.startsWith('the database did not answer at the stop')));
  // And none of its connections is left open (they would hold a process that embeds it).
  const established = () => execFileSync('ss', ['-tnH', 'state', 'established', `( dport = :${proxy.port} )`], { encoding: 'utf8' }).trim();
  await waitUntil(() => established() === '', 'the ingester\'s connections closed');
  await assertExactlyOnce(t, db, events);
});

test('runIngestion stopped while NATS is down returns and lets its process end by itself', async (t) => {
  const db = await testLog(t);
  const server = await privateNats(t);
  const script = `
    const { runIngestion } = await import(${JSON.stringify(path.join(root, 'src', 'ingest', 'service.ts'))});
    const { createPostgresEventLog } = await import(${JSON.stringify(path.join(root, 'src', 'log', 'postgres', 'index.ts'))});
    const { createLogger } = await import(${JSON.stringify(path.join(root, 'src', 'logger.ts'))});
    const stop = new AbortController();
    process.on('SIGTERM', () => stop.abort());
    const log = createPostgresEventLog({ connectionString: process.env.DATABASE_URL });
    await runIngestion({ natsUrl: process.env.NATS_URL, log, databaseUrl: process.env.DATABASE_URL, logger: createLogger('info'),
      names: { stream: 'CSE_EMBEDDED', subjectPrefix: 'cse-embedded', durable: 'cse-embedded' }, signal: stop.signal });
    await log.close();
    console.log('returned');`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: root, env: { ...process.env, DATABASE_URL: db.url, NATS_URL: server.url } });
  t.teardown(() => void child.kill('SIGKILL'));
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => void (stderr += chunk.toString()));
  const exited = waitForExit(child, 120_000);
  await waitUntil(() => stderr.includes('ingesting events from NATS'), 'the ingester to start', { timeoutMs: 120_000 });
  await server.stop();
  child.kill('SIGTERM');
  const result = await exited;
  t.is(result.code, 0, result.stderr);
  t.regex(result.stdout, /^returned$/m);
});

test.serial('NATS restarts during ingestion: the ingester reconnects by itself and nothing is lost', async (t) => {
  const db = await testLog(t);
  const server = await privateNats(t);
  const history = realisticHistory();
  const names = { stream: 'CSE_RESTART', subjectPrefix: 'cse-restart', durable: 'cse-restart' };
  const nc = await connectNats(server.url, 'ingester');
  t.teardown(() => nc.close());
  const ingester = runIngester(t, { nc, log: db.log, databaseUrl: db.url, names, batchSize: 10, retryDelayMs: { initial: 100, max: 1000 } });
  const producer = await connectNats(server.url, 'producer');
  t.teardown(() => producer.close());
  await waitUntil(async () => (await (await producer.jetstreamManager()).streams.info(names.stream).then(() => true, () => false)), 'the stream created by the ingester');

  const half = Math.floor(history.length / 2);
  await publishEvents(producer, history.slice(0, half), { names });
  await waitUntil(() => ingester.totals().messages >= half, 'the first half ingested');
  await server.stop();
  await server.start();
  // The producer reconnects too; a publish that fails while it does is retried (the ingester
  // would drop a duplicate anyway).
  for (const envelope of history.slice(half)) {
    await waitUntil(() => publishEvent(producer, envelope, { names, timeoutMs: 2000 }).then(() => true, () => false), `publish ${envelope.type}`, { timeoutMs: 30_000 });
  }
  // Appended, not only taken: an ack lost in the restart brings messages again, counted as
  // duplicates, while the last ones may still be on their way.
  await waitUntil(() => ingester.totals().appended >= history.length, 'the second half ingested after the restart', { timeoutMs: 60_000 });
  t.like(ingester.totals(), { appended: history.length, rejected: 0 });
  await assertExactlyOnce(t, db, history);
});

test.serial('serve killed with SIGKILL mid-batch, restarted: redelivered messages are not applied twice, tables right', async (t) => {
  const db = await testLog(t);
  // A short ack wait: what the killed process held comes back within seconds.
  const nats = await testNats(t, { create: { ackWaitMs: 2000 } });
  const first = startServe(t, db.url, nats);

  const publishing = publishTwice(nats, volume);
  void publishing.catch(() => undefined); // awaited below; handled now in case a wait fails first
  await waitUntil(async () => (await logCount(db)) >= 120, 'ingestion under way');
  first.child.kill('SIGKILL');
  t.is((await first.exited).signal, 'SIGKILL');
  const atKill = await logCount(db);
  t.true(atKill < volume.length, 'killed before the end');
  // It died holding messages it had not acked: JetStream redelivers them to the next process.
  const held = (await consumerFigures(nats.jsm, nats.names)).ackPending;
  t.true(held > 0, 'messages in flight at the kill');

  const second = startServe(t, db.url, nats);
  const restarted = Date.now();
  t.is(await publishing, volume.length);
  await waitUntil(async () => (await logCount(db)) >= volume.length, 'every event in the log', { timeoutMs: 60_000 });
  await waitUntil(async () => {
    const figures = await consumerFigures(nats.jsm, nats.names);
    return figures.pending === 0 && figures.ackPending === 0;
  }, 'every message acked', { timeoutMs: 60_000 });
  await waitUntil(() => projectionsCaughtUp(db), 'projections caught up');
  const recovered = Date.now() - restarted;

  await assertExactlyOnce(t, db, volume);
  t.is(await rejectedCount(db), 0);
  const stats = await ingestionStats(db);
  t.log(`killed at ${atKill} events holding ${held} unacked messages; restarted serve had everything in and projected after ${recovered} ms; stats ${JSON.stringify(stats)}`);
  // The counters are figures, written in the background: the killed process's last increments
  // may be lost with it. They never count an event twice, nor a rejection that did not happen.
  t.true(stats.accepted <= volume.length && stats.accepted + stats.duplicates <= 2 * volume.length + held, JSON.stringify(stats));
  t.is(stats.rejected, 0);
  t.deepEqual(await tableDigests(db.url), await referenceOfVolume(t));

  second.child.kill('SIGTERM');
  const exit = await second.exited;
  t.is(exit.code, 0, second.stderr());
});

test.serial('graceful shutdown under load loses nothing: SIGTERM while publishing, restart, every event once', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t, { create: { ackWaitMs: 30_000 } });
  const first = startServe(t, db.url, nats);

  const publishing = publishEvents(nats.nc, volume, { names: nats.names });
  void publishing.catch(() => undefined); // awaited below; handled now in case a wait fails first
  await waitUntil(async () => (await logCount(db)) >= 150, 'ingestion under way');
  const stopping = Date.now();
  first.child.kill('SIGTERM');
  const exit = await first.exited;
  t.is(exit.code, 0, first.stderr());
  t.log(`stopped in ${Date.now() - stopping} ms at ${await logCount(db)} events`);
  // Everything the stopped process took is either in the log and acked, or handed back: no
  // message waits for the 30 s ack wait. (The acks reached the server before serve exited; the
  // consumer's ack floor moves a moment later.)
  const inLog = await logCount(db);
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackFloor >= inLog, 'the ack floor to reach the log', { timeoutMs: 5000 });
  t.is((await consumerFigures(nats.jsm, nats.names)).ackFloor, inLog, 'what is in the log is exactly what was acked');

  const second = startServe(t, db.url, nats);
  await publishing;
  await waitUntil(async () => (await logCount(db)) >= volume.length, 'every event in the log', { timeoutMs: 60_000 });
  await waitUntil(() => projectionsCaughtUp(db), 'projections caught up');
  await assertExactlyOnce(t, db, volume);
  await assertStats(t, db, { accepted: volume.length, duplicates: 0, rejected: 0 });
  t.deepEqual(await tableDigests(db.url), await referenceOfVolume(t));

  // `status` while serving: the figures and no lag.
  await waitUntil(async () => (await consumerFigures(nats.jsm, nats.names)).ackPending === 0, 'every message acked');
  const status = await runCli(['status', '--json'], { env: { DATABASE_URL: db.url, ...nats.env } });
  t.is(status.code, 0, status.stderr);
  const ingestion = (JSON.parse(status.stdout) as { ingestion: Record<string, unknown> }).ingestion;
  t.like(ingestion, { stream: nats.names.stream, accepted: volume.length, duplicates: 0, rejected: 0, nats: { reachable: true, consumer: true, lag: 0 } });

  second.child.kill('SIGINT');
  t.is((await second.exited).code, 0, second.stderr());
});

// ---------------------------------------------------------------------------------------------
// Producers: the client, id allocation, status without NATS

// Regression: nats.js reads no credentials from a server's URL, so NATS_URL=nats://user:pass@host
// failed to authenticate, and the URL, password included, went into serve's logs and status.
test('NATS_URL with a user and password authenticates, and status does not show the password; status counts what waits for a consumer not created yet', async (t) => {
  const server = await privateNats(t, { user: 'app', pass: 's3cret-pass' });
  const withCredentials = server.url.replace('nats://', 'nats://app:s3cret-pass@');
  t.deepEqual(natsConnectionOptions(withCredentials), { servers: [server.url], user: 'app', pass: 's3cret-pass' });
  t.is(redactedNatsUrl(withCredentials), server.url.replace('nats://', 'nats://***@'));
  const nc = await connectNats(withCredentials, 'credentials test');
  t.teardown(() => nc.close());
  t.truthy((await (await nc.jetstreamManager()).getAccountInfo()).limits, 'authenticated: JetStream answers');
  const db = await testLog(t);
  const status = await runCli(['status'], { env: { DATABASE_URL: db.url, NATS_URL: withCredentials, NATS_STREAM: 'NOPE', NATS_DURABLE: 'nope' } });
  t.is(status.code, 0, status.stderr);
  t.false(`${status.stdout}${status.stderr}`.includes('s3cret-pass'), status.stdout);
  t.regex(status.stdout, /NATS nats:\/\/\*\*\*@127\.0\.0\.1:\d+: consumer nope not created yet \(serve creates it\); 0 messages waiting in the stream/);

  // Regression: with the stream there and no consumer yet, status said lag 0 whatever waited in it.
  // And a rebuild's shadow checkpoint (left by a killed rebuild) was listed as a projection lagging.
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'WAITING', subjects: ['waiting.events.>'] });
  const js = nc.jetstream();
  for (let i = 0; i < 3; i++) await js.publish('waiting.events.NamespaceCreated', JSON.stringify({ i }));
  await db.query("INSERT INTO event_store.projections (name, position) VALUES ('rebuild:namespace_usage', 0)");
  const waiting = await runCli(['status', '--json'], {
    env: { DATABASE_URL: db.url, NATS_URL: withCredentials, NATS_STREAM: 'WAITING', NATS_SUBJECT_PREFIX: 'waiting', NATS_DURABLE: 'nobody' },
  });
  t.is(waiting.code, 0, waiting.stderr);
  const report = JSON.parse(waiting.stdout) as { projections: { name: string }[]; rebuildCheckpoints: string[]; ingestion: { nats: { consumer: boolean; lag: number } } };
  t.like(report.ingestion.nats, { consumer: false, lag: 3 });
  t.deepEqual(report.rebuildCheckpoints, ['rebuild:namespace_usage']);
  t.false(report.projections.some((p) => p.name.startsWith('rebuild:')));
});

test('publishEvent validates before sending, fills in id and stream, and waits for the JetStream ack', async (t) => {
  const nats = await testNats(t, { create: true });
  const published = await publishEvent(nats.nc, { type: 'NamespaceCreated', data: { namespace_id: 7, name: 'data-science' } }, { names: nats.names });
  t.like(published, { type: 'NamespaceCreated', stream: 'namespace-7', subject: eventSubject(nats.names, 'NamespaceCreated'), sequence: 1, duplicate: false });
  t.regex(published.id, /^[0-9a-f-]{36}$/);
  // The same event again: JetStream recognises the Nats-Msg-Id.
  const again = await publishEvent(nats.nc, { id: published.id, type: 'NamespaceCreated', data: { namespace_id: 7, name: 'data-science' } }, { names: nats.names });
  t.like(again, { sequence: 1, duplicate: true });

  const invalid = await t.throwsAsync(publishEvent(nats.nc, { type: 'NamespaceCreated', data: { namespace_id: 0, name: '' } } as never, { names: nats.names }), { instanceOf: EventValidationError });
  t.regex(invalid!.message, /\/data\/namespace_id: must be >= 1/);
  // An invalid event of a list is named by its place in the list.
  await t.throwsAsync(publishEvents(nats.nc, [envelopeFor('NamespaceCreated', { namespace_id: 8, name: 'ok' }), { type: 'Nope', data: {} } as never], { names: nats.names }), {
    instanceOf: EventValidationError,
    message: /^events\[1\]: envelope: .*unknown event type "Nope"/,
  });
  // Regression: the object was validated, not its JSON; `value: undefined` passed, was left out of
  // the message, acknowledged, and refused by the ingester ("/data/value: is required").
  await t.throwsAsync(publishEvent(nats.nc, { type: 'SettingStored', data: { id: 1, prefix: 'setting', key: 'k', value: undefined } }, { names: nats.names }), {
    instanceOf: EventValidationError,
    message: /^SettingStored: \/data\/value: is required$/,
  });
  // NaN and Infinity, which JSON.stringify writes as null: refused, not sent as null.
  await t.throwsAsync(publishEvent(nats.nc, { type: 'BuildCompleted', data: { build_id: 1, ended_on: '2024-03-02T10:04:31Z', size: Number.NaN } }, { names: nats.names }), {
    instanceOf: EventValidationError,
    message: /^BuildCompleted: \/data\/size: must be a number from/,
  });
  await t.throwsAsync(publishEvent(nats.nc, { type: 'SettingStored', data: { id: 1, prefix: 'setting', key: 'k', value: 10n } }, { names: nats.names }), {
    instanceOf: EventValidationError,
    message: /^SettingStored: \/: cannot be sent as JSON: .*BigInt/,
  });
  // A rule between fields, which the ingester would check at append after JetStream took the event.
  await t.throwsAsync(
    publishEvent(nats.nc, { type: 'BuildScheduled', data: { build_id: 9, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-02T10:00:00Z', build_key_version: 3 } }, { names: nats.names }),
    { instanceOf: EventValidationError, message: /^BuildScheduled: \/data\/hash: hash is required with build_key_version 3/ },
  );
  t.is((await nats.jsm.streams.info(nats.names.stream)).state.messages, 1, 'nothing invalid was sent, nor anything before it');

  const noStream = await testNats(t);
  const unsent = envelopeFor('NamespaceCreated');
  const failed = await t.throwsAsync(publishEvent(noStream.nc, unsent, { names: noStream.names, timeoutMs: 2000 }), {
    instanceOf: NoStreamError,
    message: new RegExp(`no JetStream stream captures ${noStream.names.subjectPrefix}\\.events\\.NamespaceCreated`),
  });
  // What to publish again once the stream is there (regression: NoStreamError carried nothing).
  t.deepEqual((failed as PublishFailure).envelope, unsent);
});

test.serial('the README producer example runs against serve with the contract\'s names, and its events reach the tables', async (t) => {
  const example = fs.readFileSync(path.join(root, 'test', 'examples', 'producer.ts'), 'utf8');
  const code = example.slice(example.indexOf("import { connect } from 'nats';"));
  t.true(fs.readFileSync(path.join(root, 'README.md'), 'utf8').includes(code), 'README.md quotes test/examples/producer.ts verbatim');

  // A NATS server of its own: serve uses the default stream CONDA_STORE_EVENTS and subjects condastore.*.
  const db = await testLog(t);
  const server = await privateNats(t);
  const child = spawnCli(['serve'], { env: { DATABASE_URL: db.url, NATS_URL: server.url, LOG_LEVEL: 'warn' } });
  const exited = waitForExit(child, 120_000);
  t.teardown(() => void child.kill('SIGKILL'));
  const producerNc = await connect({ servers: server.url });
  t.teardown(() => producerNc.close());
  await waitUntil(() => producerNc.jetstreamManager().then((jsm) => jsm.consumers.info('CONDA_STORE_EVENTS', 'conda-store-events')).then(() => true, () => false), 'serve to create the stream and its consumer');
  await waitUntil(() => requestIds(producerNc, 'worker', 1, { timeoutMs: 1000 }).then(() => true, () => false), 'the id responder');

  const run = await waitForExit(spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test', 'examples', 'producer.ts')], { cwd: root, env: { ...process.env, NATS_URL: server.url } }));
  t.is(run.code, 0, run.stderr);
  t.regex(run.stdout, /^published namespace 1 and environment 1$/m);

  await waitUntil(async () => (await db.query('SELECT 1 FROM public.environment')).length === 1, 'the environment projected');
  t.deepEqual(await db.query('SELECT id, name FROM public.namespace'), [{ id: 1, name: 'data-science' }]);
  t.deepEqual(await db.query('SELECT id, namespace_id, name, description FROM public.environment'), [{ id: 1, namespace_id: 1, name: 'pandas', description: 'pandas and friends' }]);
  const events = await db.query<{ type: string; metadata: Record<string, unknown> }>('SELECT type, metadata FROM event_store.events ORDER BY global_position');
  t.deepEqual(events.map((e) => e.type), ['NamespaceCreated', 'EnvironmentCreated']);
  t.is(events[1]!.metadata.producer, 'example');

  child.kill('SIGTERM');
  const exit = await exited;
  t.is(exit.code, 0, exit.stderr);
});

// Regression (found in review): an existing consumer was used as it was, whatever its settings;
// with a delivery limit the server gave up on a message, its ack floor passed it, and the
// ingester skipped it for good.
test('an existing consumer whose settings break the guarantees is refused, naming them', async (t) => {
  const nats = await testNats(t);
  await ensureIngestion(nats.nc, nats.names);
  await nats.jsm.consumers.delete(nats.names.stream, nats.names.durable);
  // (A work-queue stream takes only explicit acks; the delivery limit and a narrower filter pass.)
  await nats.jsm.consumers.add(nats.names.stream, { ...consumerConfig(nats.names), max_deliver: 5, filter_subject: eventSubject(nats.names, 'BuildStarted') });
  await t.throwsAsync(ensureIngestion(nats.nc, nats.names), {
    message: new RegExp(`^consumer ${nats.names.durable} on stream ${nats.names.stream} cannot be used: max_deliver is 5, not unlimited \\(-1\\); its filter \\(${nats.names.subjectPrefix}\\.events\\.BuildStarted\\) is not ${nats.names.subjectPrefix}\\.events\\.>\\. Delete it`),
  });
});

// Regression (found by a review): headers_only, or a limit on a pull request below the
// ingester's fetches, passed the check. Without bodies every message was stored as a rejection,
// acked and gone; with max_batch or max_expires too low the server refused every fetch and
// ingestion stood still, nothing logged.
test('an existing consumer that delivers no bodies, or refuses the ingester\'s fetches, is refused, naming why', async (t) => {
  const nats = await testNats(t);
  const names = nats.names;
  const base = consumerConfig(names);
  t.deepEqual(consumerProblems({ ...base, headers_only: true }, names), ['headers_only is set: messages would come without their bodies']);
  t.deepEqual(consumerProblems({ ...base, max_batch: 100, max_expires: 500e6 }, names, { maxMessages: 200, expiresMs: 1000 }), [
    "max_batch is 100, below the ingester's fetches of up to 200 messages (--ingest-batch-size)",
    "max_expires is 500 ms, below the ingester's fetches of 1000 ms",
  ]);
  t.deepEqual(consumerProblems({ ...base, max_batch: 200, max_expires: 1000e6 }, names, { maxMessages: 200, expiresMs: 1000 }), []);
  // On the server: a consumer made with a small max_batch is refused before anything is fetched.
  await ensureIngestion(nats.nc, names);
  await nats.jsm.consumers.delete(names.stream, names.durable);
  await nats.jsm.consumers.add(names.stream, { ...base, max_batch: 10 });
  await t.throwsAsync(ensureIngestion(nats.nc, names, { fetch: { maxMessages: 500, expiresMs: 1000 } }), {
    message: new RegExp(`^consumer ${names.durable} on stream ${names.stream} cannot be used: max_batch is 10, below the ingester's fetches of up to 500 messages`),
  });
});

// Regression (found by a review): a push consumer of the ingester's name passed the check; nats.js
// then refused to pull from it at each session's start, and since the retry delay went back to
// its first step whenever ownership was taken, ingestion retried every 250 ms for ever.
test('an existing push consumer of the ingester\'s name is refused, naming it', async (t) => {
  const nats = await testNats(t);
  const names = nats.names;
  await ensureIngestion(nats.nc, names);
  await nats.jsm.consumers.delete(names.stream, names.durable);
  const { max_waiting: _, ...pull } = consumerConfig(names); // a push consumer takes no max_waiting
  await nats.jsm.consumers.add(names.stream, { ...pull, deliver_subject: `${names.subjectPrefix}.push-inbox` });
  await t.throwsAsync(ensureIngestion(nats.nc, names), {
    message: new RegExp(`^consumer ${names.durable} on stream ${names.stream} cannot be used: it is a push consumer \\(deliver_subject ${names.subjectPrefix}\\.push-inbox\\), not a pull consumer\\. Delete it`),
  });
});

// Regression (found in review): nats.js closes a connection for good after the same authorization
// error twice in a row, whatever its reconnect policy, and serve's ingestion ended with it.
test('a service connection reconnects through authorization errors: a server back for a while with other users', async (t) => {
  const auth = { user: 'app', pass: 'app-pass' };
  const server = await privateNats(t, auth);
  const nc = await connectNats(server.url.replace('nats://', `nats://${auth.user}:${auth.pass}@`), 'test');
  t.teardown(() => nc.close());
  const statuses: string[] = [];
  void (async () => {
    for await (const status of nc.status()) statuses.push(status.type === 'error' ? `error ${String((status.data as unknown as { code?: string })?.code ?? status.data)}` : status.type);
  })();
  await server.stop();
  await server.start({ user: 'app', pass: 'another-pass' });
  await waitUntil(() => statuses.filter((s) => s === 'error AUTHORIZATION_VIOLATION').length >= 3, 'authorization refused again and again');
  t.false(nc.isClosed());
  await server.stop();
  const before = statuses.length;
  await server.start();
  await waitUntil(() => statuses.slice(before).includes('reconnect'), 'reconnected');
  await nc.flush();
  t.false(nc.isClosed());
});

test('id allocation over NATS request-reply', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t);
  const responder = startIdsResponder(nats.nc, db.log, silentLogger, nats.names);
  t.teardown(() => responder.stop());
  await nats.nc.flush();

  // A bound, not a timing: the first answer opens the log's first connection, and a request timed
  // out under load and made again would get the next ids.
  const ask = async (kind: string, body: string, timeout = 30_000) => JSON.parse(new TextDecoder().decode((await nats.nc.request(idsSubject(nats.names, kind), body, { timeout })).data));
  t.deepEqual(await ask('build', '{"n": 3}'), { ids: [1, 2, 3] });
  t.deepEqual(await ask('build', '{"n": 2}'), { ids: [4, 5] });
  t.deepEqual(await ask('namespace', ''), { ids: [1] });
  t.deepEqual(await requestIds(nats.nc, 'conda_package_build', 4, { names: nats.names }), [1, 2, 3, 4]);
  t.regex((await ask('bulid', '{"n": 1}')).error, /unknown id kind "bulid" \(known: namespace, .*build/);
  t.regex((await ask('build', '{"n": 0}')).error, /n must be an integer from 1 to 10000, got 0/);
  t.regex((await ask('build', '{"n": "ten"}')).error, /n must be an integer/);
  t.regex((await ask('build', '{"count": 2}')).error, /unknown field "count"/);
  t.regex((await ask('build', 'ten please')).error, /request body must be JSON like \{"n": 10\}/);
  await t.throwsAsync(requestIds(nats.nc, 'nope', 1, { names: nats.names }), { message: /id allocation for nope failed: unknown id kind "nope"/ });
  // A publish without a reply subject allocates nothing (regression: it burnt the ids asked for).
  nats.nc.publish(idsSubject(nats.names, 'build'), '{"n": 1000}');
  await nats.nc.flush();
  t.deepEqual(await ask('build', '{"n": 1}'), { ids: [6] });
  // The ids handed out are the allocator's: the library call continues the same sequence.
  t.deepEqual(await db.log.allocateIds('build', 1), [7]);

  // A flood: at most MAX_IDS_REQUESTS_AT_ONCE answered at a time and MAX_IDS_REQUESTS_WAITING
  // waiting; beyond, an immediate "busy". No id is handed out twice.
  // The last of those waiting is answered after a thousand allocations: given time to be, since
  // this is about what is answered, not how soon (a busy machine took more than 5 s).
  const flood = await Promise.all(Array.from({ length: 2 * MAX_IDS_REQUESTS_WAITING }, () => ask('namespace', '{"n": 1}', 120_000)));
  const busy = flood.filter((reply) => reply.error);
  const given = flood.flatMap((reply) => reply.ids ?? []);
  t.true(busy.length > 0 && busy.every((reply) => /^busy: \d+ id requests in hand, try again$/.test(reply.error)));
  t.true(given.length >= MAX_IDS_REQUESTS_WAITING);
  t.is(new Set(given).size, given.length);
});

// Regression (found by a review): nats.js closes a subscription the server refuses (a permissions
// violation); the responder logged it and answered nothing more until serve was restarted, while
// ingestion went on, so nobody noticed. Now it subscribes again until the permissions allow it.
test('the id responder subscribes again after the server refused its subscription, and answers once the permissions allow it', async (t) => {
  const db = await testLog(t);
  const auth = { user: 'svc', pass: 'svc-pass' };
  const permissions = (deny: string[]) => `authorization { users = [ { user: "${auth.user}", password: "${auth.pass}", permissions: { subscribe: { deny: ${JSON.stringify(deny)} } } } ] }\n`;
  const server = await privateNats(t, auth, permissions(['condastore.ids.>']));
  const nc = await connect({ servers: server.url, ...auth });
  t.teardown(() => nc.close());
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const responder = startIdsResponder(nc, db.log, logger, {}, { resubscribeMs: { initial: 50, max: 200 } });
  t.teardown(() => responder.stop());
  await waitUntil(() => warnings.filter((line) => line.includes('Permissions Violation')).length >= 2, 'the subscription to be refused, and refused again');
  await server.reload(permissions([]));
  // Answered once a subscription holds; each request until then fails at once (no responders). The
  // first answer opens the log's first connection: a short timeout lost it under load, and the
  // request made again got the next block.
  let ids: number[] | undefined;
  await waitUntil(async () => (ids = await requestIds(nc, 'namespace', 2, { timeoutMs: 10_000 }).catch(() => undefined)) !== undefined, 'an answer');
  t.deepEqual(ids, [1, 2]);
});

/** How many id allocations of this database wait for a kind's allocation lock (7408). */
async function allocationsWaiting(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 7408 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())");
  return rows[0]!.n;
}

// Regression: serve drained its NATS connection as soon as the responder unsubscribed, and the
// id requests still in hand (waiting for the database, or for a slot) were never answered: their
// requesters timed out. Now a stop answers them all before the drain.
test('a stop answers every id request in hand before the connection drains: those being allocated with ids, those waiting with "ask again"', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t);
  const requester = await connect({ servers: natsUrl, name: `requester ${t.title}` });
  t.teardown(() => requester.close());
  const responder = startIdsResponder(nats.nc, db.log, silentLogger, nats.names);
  await nats.nc.flush();
  // The allocations wait for the kind's allocation lock, held here.
  const blocker = await connectPg(t, db.url);
  await blocker.query('BEGIN');
  await blocker.query("SELECT pg_advisory_xact_lock(7408, hashtext('build'))");
  const asked = MAX_IDS_REQUESTS_AT_ONCE + 2;
  const replies = Array.from({ length: asked }, () =>
    requester.request(idsSubject(nats.names, 'build'), '{"n": 1}', { timeout: 60_000 }).then((msg) => JSON.parse(new TextDecoder().decode(msg.data)) as { ids?: number[]; error?: string }));
  await waitUntil(async () => (await allocationsWaiting(blocker)) === MAX_IDS_REQUESTS_AT_ONCE, 'the allocations to wait for the lock');
  // Stop as serve does: the responder, then the drain. The allocations go on once the lock is free.
  const stopped = responder.stop().then(() => nats.nc.drain());
  await blocker.query('COMMIT');
  await stopped;
  const answers = await Promise.all(replies);
  t.deepEqual(answers.filter((a) => a.ids).flatMap((a) => a.ids).sort((x, y) => x! - y!), Array.from({ length: MAX_IDS_REQUESTS_AT_ONCE }, (_, i) => i + 1));
  t.deepEqual(answers.filter((a) => !a.ids).map((a) => a.error), Array(asked - MAX_IDS_REQUESTS_AT_ONCE).fill(STOPPING_ERROR));
});

test('a stop waits at most stopWaitMs for allocations that do not finish (a database that does not answer)', async (t) => {
  const db = await testLog(t);
  const nats = await testNats(t);
  const requester = await connect({ servers: natsUrl, name: `requester ${t.title}` });
  t.teardown(() => requester.close());
  const responder = startIdsResponder(nats.nc, db.log, silentLogger, nats.names, { stopWaitMs: 300 });
  await nats.nc.flush();
  const blocker = await connectPg(t, db.url);
  await blocker.query('BEGIN');
  await blocker.query("SELECT pg_advisory_xact_lock(7408, hashtext('build'))");
  void requester.request(idsSubject(nats.names, 'build'), '{"n": 1}', { timeout: 60_000 }).catch(() => undefined);
  await waitUntil(async () => (await allocationsWaiting(blocker)) === 1, 'the allocation to wait for the lock');
  // Resolves with the allocation still held at the lock.
  await responder.stop();
  t.is(await allocationsWaiting(blocker), 1);
  await blocker.query('COMMIT');
});

test('status works when NATS is unreachable, and says so', async (t) => {
  const db = await testLog(t);
  const status = await runCli(['status'], { env: { DATABASE_URL: db.url, NATS_URL: 'nats://127.0.0.1:1' } });
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /^log head: 0$/m);
  t.regex(status.stdout, /messages accepted: 0, duplicates: 0, rejected: 0/);
  t.regex(status.stdout, /NATS unreachable at nats:\/\/127\.0\.0\.1:1: .+ \(lag unknown\)/);
});
