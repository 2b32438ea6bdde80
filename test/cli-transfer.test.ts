/**
 * `conda-store-events append` and `export`, run as an operator runs them: the real CLI in a child
 * process, against a database of the test's own.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Readable } from 'node:stream';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { idIntroduced, type Envelope } from '../src/catalogue/index.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { AppendStoppedError, appendNdjson } from '../src/transfer/append-ndjson.js';
import { ndjsonLines } from '../src/transfer/ndjson.js';
import type { EventLog, RecordedEvent } from '../src/log/types.js';
import { ensureDatabase } from '../src/db/ensure-database.js';
import { spawn } from 'node:child_process';
import { cliEnv, cliPath, runCli, spawnCli, waitForExit, type CliResult } from './helpers/cli.js';
import { connect, freshDatabase, withAdmin, type TestDatabase } from './helpers/database.js';
import { realisticHistory } from './helpers/history.js';
import { waitUntil } from './helpers/projection.js';
import { envelopeFor } from './helpers/samples.js';

// ---------------------------------------------------------------------------------------------
// Helpers

interface Db extends TestDatabase {
  log: EventLog;
}

async function database(t: ExecutionContext): Promise<Db> {
  const db = await freshDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  // Registered after freshDatabase's drop, so it runs first (ava runs teardowns last-in, first-out).
  t.teardown(() => log.close());
  return { ...db, log };
}

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cse-cli-transfer-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeFile(t: ExecutionContext, lines: string[], name = 'events.ndjson'): string {
  const file = path.join(tempDir(t), name);
  fs.writeFileSync(file, lines.map((line) => `${line}\n`).join(''));
  return file;
}

const ndjson = (envelopes: unknown[]) => envelopes.map((envelope) => JSON.stringify(envelope));

function cli(db: { url: string }, args: string[], input?: string): Promise<CliResult> {
  return runCli(args, { env: { DATABASE_URL: db.url }, input });
}

async function readLog(log: EventLog): Promise<RecordedEvent[]> {
  const all: RecordedEvent[] = [];
  for await (const batch of log.readAll()) all.push(...batch);
  return all;
}

/** What a log holds, without what only the database decides (positions, times). */
function contents(events: RecordedEvent[]) {
  return events.map((e) => ({ id: e.id, type: e.type, stream: e.stream, stream_version: e.streamVersion, data: e.data, metadata: e.metadata }));
}

function summary(appended: number, duplicates: number, rejected: number): string {
  return `appended ${appended}, skipped as duplicates ${duplicates}, rejected ${rejected}`;
}

/** A result shown in a failed assertion's message. */
const shown = (result: CliResult) => `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;

/** The `line N: reason` entries of an append report, by line number. */
function rejections(stdout: string): Map<number, string> {
  const found = new Map<number, string>();
  for (const match of stdout.matchAll(/^ {2}line (\d+): (.*)$/gm)) found.set(Number(match[1]), match[2]!);
  return found;
}

// ---------------------------------------------------------------------------------------------
// 1, 2. append of a whole history, then again

test('append: a file with a whole realistic history goes in, in order', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  const file = writeFile(t, ndjson(history));

  const result = await cli(db, ['append', file]);
  t.is(result.code, 0, shown(result));
  t.true(result.stdout.includes(summary(history.length, 0, 0)), shown(result));

  const events = await readLog(db.log);
  t.is(events.length, history.length);
  t.deepEqual(
    events.map((e) => ({ id: e.id, type: e.type, stream: e.stream, data: e.data })),
    history.map((h) => ({ id: h.id, type: h.type, stream: h.stream, data: h.data })),
  );
  t.true(events.every((e, i) => i === 0 || e.globalPosition > events[i - 1]!.globalPosition));
});

test('append: the same file again skips every line as a duplicate and leaves the log unchanged', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  const file = writeFile(t, ndjson(history));

  const first = await cli(db, ['append', file]);
  t.is(first.code, 0, shown(first));
  const before = await readLog(db.log);

  const again = await cli(db, ['append', file]);
  t.is(again.code, 0, shown(again));
  t.true(again.stdout.includes(summary(0, history.length, 0)), shown(again));
  const after = await readLog(db.log);
  t.deepEqual(after, before);
});

// ---------------------------------------------------------------------------------------------
// 3. export, and append of an export

test('export then append into an empty database gives the same log, and the same export byte for byte', async (t) => {
  const [source, target] = await Promise.all([database(t), database(t)]);
  const history = realisticHistory();
  const appended = await cli(source, ['append', writeFile(t, ndjson(history))]);
  t.is(appended.code, 0, shown(appended));

  const exported = await cli(source, ['export']);
  t.is(exported.code, 0, shown(exported));
  const lines = exported.stdout.split('\n');
  t.is(lines.pop(), '', 'the export ends with a newline');
  t.is(lines.length, history.length);

  const restored = await cli(target, ['append', writeFile(t, lines, 'export.ndjson')]);
  t.is(restored.code, 0, shown(restored));
  t.true(restored.stdout.includes(summary(history.length, 0, 0)), shown(restored));

  t.deepEqual(contents(await readLog(target.log)), contents(await readLog(source.log)));

  const exportedAgain = await cli(target, ['export']);
  t.is(exportedAgain.code, 0, shown(exportedAgain));
  t.is(exportedAgain.stdout, exported.stdout);
});

// Regression: a restored log brings its own ids, and the allocator's sequences stayed where they
// were: allocateIds handed out ids in use (a new namespace refused as existing, a row id taken).
test('append moves the id allocator past every id the appended events hold; allocating meanwhile never gets one twice', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  const highest = new Map<string, number>();
  for (const envelope of history) {
    const introduced = idIntroduced(envelope);
    if (introduced) highest.set(introduced.kind, Math.max(highest.get(introduced.kind) ?? 0, introduced.id));
  }
  t.true(highest.size >= 8, [...highest.keys()].join(', '));
  // Ids allocated before the restore, and while it runs, stay the allocator's own.
  const before = await db.log.allocateIds('namespace', 1);
  const appending = cli(db, ['append', writeFile(t, ndjson(history))]);
  const during = await db.log.allocateIds('namespace', 3);
  const appended = await appending;
  t.is(appended.code, 0, shown(appended));
  for (const [kind, id] of highest) {
    const [next] = await db.log.allocateIds(kind, 1);
    t.true(next! > id, `${kind}: allocated ${next} after the restore, the log holds ${id}`);
  }
  const after = await db.log.allocateIds('namespace', 5);
  t.is(new Set([...before, ...during, ...after]).size, 9, 'no namespace id handed out twice');
  // Moving past ids the allocator has gone beyond already changes nothing.
  await db.log.reserveIds('namespace', 1);
  t.true((await db.log.allocateIds('namespace', 1))[0]! > Math.max(...after));
});

// Regression: the allocator was moved past a restored id by one nextval per id below it: a line
// with namespace_id 2,000,000,000 cost minutes of a backend's CPU, and Ctrl-C did not stop it.
test('an id near the top of its range moves the allocator in one step', async (t) => {
  const db = await database(t);
  const high = 2_000_000_000;
  const before = await db.log.allocateIds('namespace', 50);
  const appended = await cli(db, ['append', writeFile(t, ndjson([envelopeFor('NamespaceCreated', { namespace_id: high, name: 'high' })]))]);
  t.is(appended.code, 0, shown(appended));
  const [next] = await db.log.allocateIds('namespace', 1);
  t.is(next, high + 1);
  t.false(before.includes(high));
});

// Regression (found by a review): an append that failed part-way threw the bare error; the counts
// and refused lines of the batches that went in were lost, and where to start again unknown.
test('an append that fails part-way reports what went in before the failure, and the line it stopped at', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  async function* failing() {
    for (const envelope of history.slice(0, 4)) yield `${JSON.stringify(envelope)}\n`;
    yield 'not json\n';
    yield `${JSON.stringify(history[4])}\n`;
    throw new Error('the input could not be read');
  }
  const error = await t.throwsAsync(appendNdjson(db.log, Readable.from(failing()), { batchSize: 2 }), { instanceOf: AppendStoppedError });
  t.is(error!.message, 'append stopped at line 6: the input could not be read (the lines before it were taken; run it again: what went in counts as duplicates)');
  t.like(error!.report, { appended: 4, duplicates: 0, stoppedAtLine: 6 });
  t.deepEqual(error!.report.rejected.map((rejection) => rejection.line), [5]);
  t.deepEqual((await readLog(db.log)).map((event) => event.id), history.slice(0, 4).map((envelope) => envelope.id));
});

// Regression (found by a review): a batch whose events went in but whose ids could not be reserved
// was counted as appended, though the run stopped at its first line and a run from there appends it
// again (as duplicates).
test('an append whose id reservation fails after its batch went in stops at that batch, not counting it', async (t) => {
  const db = await database(t);
  const namespaces = [1, 2, 3].map((id) => envelopeFor('NamespaceCreated', { namespace_id: 80 + id, name: `reserve-${id}` }));
  const input = () => Readable.from(ndjson(namespaces).map((line) => `${line}\n`));
  // The kind's allocation lock (ids-reserve.sql), held: the reservation after the first batch waits.
  const blocker = await connect(t, db.url);
  await blocker.query('BEGIN');
  await blocker.query(`SELECT pg_advisory_xact_lock(7408, hashtext('namespace'))`);
  const appending = appendNdjson(db.log, input(), { batchSize: 2 });
  void appending.catch(() => undefined); // awaited below
  let waiting: number | undefined;
  await waitUntil(async () => {
    // This database's only: another test's allocation waiting on its own server-wide lock key.
    const { rows } = await blocker.query<{ pid: number }>(
      `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 7408 AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
    );
    waiting = rows[0]?.pid;
    return waiting !== undefined;
  }, 'the reservation to wait for the allocation lock');
  await blocker.query('SELECT pg_terminate_backend($1)', [waiting]);
  const error = await t.throwsAsync(appending, { instanceOf: AppendStoppedError });
  t.regex(error!.message, /^append stopped at line 1: /);
  t.like(error!.report, { appended: 0, duplicates: 0, stoppedAtLine: 1 });
  await blocker.query('COMMIT');
  t.is((await readLog(db.log)).length, 2, 'the batch went in');
  t.like(await appendNdjson(db.log, input(), { batchSize: 2 }), { appended: 1, duplicates: 2 });
});

// Regression (found by a review): a line of any length was read into memory whole, and one past
// what a string can hold (512 MiB) was reported as "not valid UTF-8"; past 4 GiB, a RangeError.
test('an NDJSON line longer than the limit is refused as too long, its bytes not kept, wherever the chunks end; the lines around it are read', async (t) => {
  const long = 'x'.repeat(40);
  const input = Buffer.from(`{"a":1}\n${long}\r\n{"b":2}\n${long}`);
  const read = async (chunks: Buffer[]) => {
    const lines: unknown[] = [];
    for await (const line of ndjsonLines(Readable.from(chunks), { maxLineBytes: 16 })) lines.push(line);
    return lines;
  };
  const whole = await read([input]);
  t.deepEqual(whole, [
    { number: 1, text: '{"a":1}', bytes: 8 },
    { number: 2, text: '', tooLong: true, bytes: 8 + 42 },
    { number: 3, text: '{"b":2}', bytes: 50 + 8 },
    { number: 4, text: '', tooLong: true, bytes: 58 + 40 },
  ]);
  for (let cut = 1; cut < input.length; cut++) {
    t.deepEqual(await read([input.subarray(0, cut), input.subarray(cut)]), whole, `cut at byte ${cut}`);
  }
  t.deepEqual(await read([...input].map((byte) => Buffer.from([byte]))), whole, 'a byte a chunk');
});

// The line reader splits bytes itself (to decode each line strictly): wherever the chunks of the
// input end, in a CRLF, in a character, in a BOM, with empty chunks between, the lines are the same.
test('NDJSON lines are the same wherever the input is cut into chunks; each is numbered, counted and decoded on its own', async (t) => {
  const input = Buffer.concat([
    Buffer.from('\uFEFF{"a":1}\r\n\r\n{"b":"\u00e9\u{1F40D}"}\r{"c":3}\n  \n'),
    Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]), // Latin-1
    Buffer.from('\uFEFF{"d":4}\r\nlast'),
  ]);
  const read = async (chunks: Buffer[]) => {
    const lines: unknown[] = [];
    for await (const line of ndjsonLines(Readable.from(chunks))) lines.push(line);
    return lines;
  };
  const whole = await read([input]);
  t.deepEqual(whole, [
    // Bytes so far, line endings included: BOM 3 + 7 + CRLF; CRLF; 14 (é is 2 bytes, the snake 4) + CR; ...
    { number: 1, text: '{"a":1}', bytes: 12 },
    { number: 3, text: '{"b":"\u00e9\u{1F40D}"}', bytes: 14 + 15 },
    { number: 4, text: '{"c":3}', bytes: 29 + 8 },
    { number: 6, text: '', notUtf8: true, bytes: 37 + 3 + 5 },
    { number: 7, text: '{"d":4}', bytes: 45 + 12 },
    { number: 8, text: 'last', bytes: 57 + 4 },
  ]);
  t.is(input.length, 61);
  for (let cut = 1; cut < input.length; cut++) {
    t.deepEqual(await read([input.subarray(0, cut), Buffer.alloc(0), input.subarray(cut)]), whole, `cut at byte ${cut}`);
  }
  t.deepEqual(await read([...input].map((byte) => Buffer.from([byte]))), whole, 'a byte a chunk');
});

// Regression: bytes that are not UTF-8 were read as U+FFFD, and the event went into the
// append-only log with its text changed for good (exit 0).
test('append refuses a line that is not UTF-8 (a Latin-1 file), naming the line; the others go in', async (t) => {
  const db = await database(t);
  const [good, latin1] = [envelopeFor('NamespaceCreated', { namespace_id: 71, name: 'cafe' }), envelopeFor('NamespaceCreated', { namespace_id: 72, name: 'caf\u00e9' })];
  const file = path.join(tempDir(t), 'latin1.ndjson');
  fs.writeFileSync(file, Buffer.concat([Buffer.from(`${JSON.stringify(good)}\n`), Buffer.from(`${JSON.stringify(latin1)}\n`, 'latin1')]));
  const result = await cli(db, ['append', file]);
  t.is(result.code, 1, shown(result));
  t.true(result.stdout.includes(summary(1, 0, 1)), shown(result));
  t.regex(result.stdout, /^  line 2: not valid UTF-8: is the file in another encoding/m);
  t.deepEqual((await readLog(db.log)).map((e) => e.stream), ['namespace-71']);
});

// Regression: a refused line's reason quotes the line, and a corrupt file's escape sequences went
// to the operator's terminal as they were (clearing or recolouring it).
test('append prints control characters of a refused line as escapes, not to the terminal', async (t) => {
  const db = await database(t);
  const result = await cli(db, ['append', writeFile(t, ['x\u001b[2J\u001b[31mRED'])]);
  t.is(result.code, 1, shown(result));
  t.regex(result.stdout, /line 1: not valid JSON: .*x\\u001b\[2J\\u001b\[31mRED/);
  t.false(result.stdout.includes('\u001b'), 'no raw escape character');
});

// Regression: export | head -1 ended with "error: write EPIPE" and exit 2.
test('export into a reader that stops early (export | head) ends quietly with exit 0', async (t) => {
  const db = await database(t);
  for (let i = 0; i < 10; i++) await db.log.append(Array.from({ length: 500 }, (_, j) => ({ stream: `s-${i}-${j}`, events: [{ id: crypto.randomUUID(), type: 'Tested', data: { padding: 'x'.repeat(200) } }] })));
  const child = spawnCli(['export'], { env: { DATABASE_URL: db.url } });
  const exited = waitForExit(child);
  child.stdout!.once('data', () => child.stdout!.destroy());
  const result = await exited;
  t.is(result.code, 0, shown(result));
  t.notRegex(result.stderr, /error/, shown(result));
});

// Regression: the user name was filled in with WHATWG URL, which refuses a URL with a user and no
// host (the form of a Unix socket's URL, postgres://user@/db?host=/run/postgresql): "Invalid URL".
test('a DATABASE_URL without a host in its authority (a Unix socket\'s form) works, for the commands and to create the database', async (t) => {
  const db = await database(t);
  await db.log.append({ stream: 's-1', events: [{ id: crypto.randomUUID(), type: 'Tested', data: {} }] });
  const name = new URL(db.url).pathname.slice(1);
  const exported = await runCli(['export'], { env: { DATABASE_URL: `postgres://postgres@/${name}?host=127.0.0.1` } });
  t.is(exported.code, 0, shown(exported));
  t.is(exported.stdout.split('\n').filter(Boolean).length, 1, shown(exported));
  const created = `${name}_created`;
  t.teardown(() => withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${created}"`)));
  await ensureDatabase(`postgres://postgres@/${created}?host=127.0.0.1`);
  t.is((await withAdmin((admin) => admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [created]))).rowCount, 1);
});

// Regression: SIGINT ended append anywhere, between a batch's commit and the id reservation after
// it too (the allocator then handed out ids the log held). Stopped between batches (where this
// test signals it: a batch in flight is not caught in the act), it reports where it stopped.
test('append stopped by SIGINT between batches has moved the allocator past what went in, and says where it stopped', async (t) => {
  const db = await database(t);
  const namespaces = [1, 2, 3, 4].map((id) => envelopeFor('NamespaceCreated', { namespace_id: 90 + id, name: `sig-${id}` }));
  const child = spawnCli(['append', '-', '--batch-size', '2'], { env: { DATABASE_URL: db.url } });
  // As long as the wait below may take: the default 60 s would kill the child before it.
  const exited = waitForExit(child, 240_000);
  child.stdin!.write(ndjson(namespaces).map((line) => `${line}\n`).join(''));
  // Standard input stays open: the append waits for more when the signal comes.
  // A generous deadline: this file's tests each start a child at once, on two cores.
  await waitUntil(async () => (await db.log.headPosition()) === 4, 'both batches appended', { timeoutMs: 180_000 });
  child.kill('SIGINT');
  const result = await exited;
  t.is(result.code, 2, shown(result));
  t.true(result.stdout.includes(summary(4, 0, 0)), shown(result));
  t.regex(result.stderr, /append interrupted: line 5 and the lines after it were not appended/);
  const [next] = await db.log.allocateIds('namespace', 1);
  t.true(next! > 94, `allocated ${next} after namespaces 91 to 94`);
});

test('an append that stops half-way (its input fails) has moved the id allocator past the batches it appended', async (t) => {
  const db = await database(t);
  const namespaces = [1, 2, 3, 4].map((id) => envelopeFor('NamespaceCreated', { namespace_id: 40 + id, name: `ns-${id}` }));
  // Two batches of two lines, then the input fails.
  const input = new Readable({ read() {} });
  input.push(ndjson(namespaces).map((line) => `${line}\n`).join(''));
  setImmediate(() => input.destroy(new Error('the disk went away')));
  await t.throwsAsync(appendNdjson(db.log, input, { batchSize: 2 }), { instanceOf: AppendStoppedError, message: /^append stopped at line \d+: the disk went away / });
  const appended = (await readLog(db.log)).length;
  t.true(appended >= 2, `${appended} appended`);
  const [next] = await db.log.allocateIds('namespace', 1);
  t.true(next! > 40 + appended, `allocated ${next} after ${appended} namespaces from 41`);
});

test('append takes a file that starts with a byte order mark (as some editors save UTF-8)', async (t) => {
  const db = await database(t);
  const history = realisticHistory().slice(0, 5);
  const file = path.join(tempDir(t), 'bom.ndjson');
  fs.writeFileSync(file, `\uFEFF${ndjson(history).join('\r\n')}\r\n`);
  const result = await cli(db, ['append', file]);
  t.is(result.code, 0, shown(result));
  t.true(result.stdout.includes(summary(5, 0, 0)), shown(result));
});

test('export --stream gives only that stream, --from starts at a position', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  const appended = await cli(db, ['append', writeFile(t, ndjson(history))]);
  t.is(appended.code, 0, shown(appended));
  const events = await readLog(db.log);

  const parse = (stdout: string) => stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Envelope);

  const build = await cli(db, ['export', '--stream', 'build-1']);
  t.is(build.code, 0, shown(build));
  const buildLines = parse(build.stdout);
  const buildEvents = events.filter((e) => e.stream === 'build-1');
  t.true(buildEvents.length > 1);
  t.deepEqual(buildLines.map((l) => l.id), buildEvents.map((e) => e.id));
  t.true(buildLines.every((l) => l.stream === 'build-1'));
  t.deepEqual(buildLines.map((l) => l.expectedVersion), ['no_stream', ...buildEvents.slice(1).map((e) => e.streamVersion - 1)]);

  const from = events[20]!.globalPosition;
  const tail = await cli(db, ['export', '--from', String(from)]);
  t.is(tail.code, 0, shown(tail));
  t.deepEqual(parse(tail.stdout).map((l) => l.id), events.filter((e) => e.globalPosition >= from).map((e) => e.id));
  t.is(parse(tail.stdout)[0]!.id, events[20]!.id);

  // Regression (found by a review): a stream with no event at all (a misspelt name) exported
  // nothing with exit code 0, which a script took for a backup of it.
  const nothing = await cli(db, ['export', '--stream', 'build-999']);
  t.is(nothing.code, 1, shown(nothing));
  t.is(nothing.stdout, '');
  t.regex(nothing.stderr, /^export: stream build-999 has no events \(streams are named <kind>-<id>, e\.g\. build-42\)$/m);
  // Nothing past --from in a stream that has events: an export with nothing new.
  const past = await cli(db, ['export', '--stream', 'build-1', '--from', String(events[events.length - 1]!.globalPosition + 1)]);
  t.is(past.code, 0, shown(past));
  t.is(past.stdout, '');
});

// ---------------------------------------------------------------------------------------------
// 4. refused lines among valid ones

test('append: malformed and refused lines are reported with their line numbers; the valid ones go in', async (t) => {
  const db = await database(t);
  const namespace = envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'default' });
  const valid = {
    namespace,
    metadata: envelopeFor('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: { owner: 'platform' } }, { expectedVersion: 0 }),
    environment: envelopeFor('EnvironmentCreated', { environment_id: 1, namespace_id: 1, name: 'python-data' }),
    channel: envelopeFor('CondaChannelRegistered', { channel_id: 1, name: 'conda-forge' }),
    setting: envelopeFor('SettingStored', { id: 1, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel'] }),
  };
  // Random, so that compression cannot bring it under the btree limit of the stream index.
  const longPrefix = crypto.randomBytes(4000).toString('hex');
  const namespaceCreated = (data: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    JSON.stringify({ id: crypto.randomUUID(), type: 'NamespaceCreated', stream: `namespace-${String(data.namespace_id)}`, data, ...extra });

  // Line numbers as an editor shows them (1-based, blank lines counted); `expect` matches the reason.
  const lines: { text: string; expect?: RegExp; valid?: Envelope }[] = [
    { text: JSON.stringify(valid.namespace), valid: valid.namespace },
    { text: '' },
    { text: 'this is not JSON {', expect: /not valid JSON/ },
    { text: '[1]', expect: /envelope: \/: must be an object|\/: .*object/ },
    { text: JSON.stringify({ ...envelopeFor('NamespaceCreated', { namespace_id: 2, name: 'x' }), type: 'NamespaceCreatd' }), expect: /\/type: unknown event type "NamespaceCreatd" \(did you mean NamespaceCreated\?\)/ },
    { text: namespaceCreated({ namespace_id: 2 }), expect: /\/data\/name: is required/ },
    { text: namespaceCreated({ namespace_id: 2, name: 42 }), expect: /\/data\/name: must be a string/ },
    { text: '   ' },
    { text: namespaceCreated({ namespace_id: -3, name: 'negative' }, { stream: 'namespace--3' }), expect: /\/data\/namespace_id: must be >= 1|\/data\/namespace_id: must be a positive integer/ },
    { text: namespaceCreated({ namespace_id: 2, name: 'extra', colour: 'red' }), expect: /\/data\/colour: is not allowed/ },
    { text: namespaceCreated({ namespace_id: 4, name: 'four' }, { stream: 'namespace-5' }), expect: /\/stream: expected namespace-4/ },
    { text: namespaceCreated({ namespace_id: 2, name: 'ev' }, { expectedVersion: 'latest' }), expect: /\/expectedVersion: / },
    { text: namespaceCreated({ namespace_id: 2, name: 'ev2' }, { expected_version: 0 }), expect: /\/expected_version: is not allowed \(did you mean expectedVersion\?\)/ },
    { text: JSON.stringify(valid.metadata), valid: valid.metadata },
    {
      text: JSON.stringify(envelopeFor('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: {} }, { expectedVersion: 0 })),
      expect: /^NamespaceMetadataUpdated on namespace-1: wrong expected version for stream namespace-1: expected 0, actual 1/,
    },
    { text: namespaceCreated({ namespace_id: 6, name: 'six' }, { expectedVersion: 0 }), expect: /NamespaceCreated on namespace-6: .*expectedVersion must be "no_stream" or absent/ },
    { text: namespaceCreated({ namespace_id: 7, name: 'default' }), expect: /^NamespaceCreated on namespace-7: duplicate namespace\.name: "default" is already taken by namespace-1/ },
    { text: JSON.stringify(envelopeFor('EnvironmentCreated', { environment_id: 2, namespace_id: 99, name: 'orphan' })), expect: /^EnvironmentCreated on environment-2: .*namespace 99 does not exist/ },
    {
      text: JSON.stringify(envelopeFor('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: { stolen: true } }, { id: namespace.id })),
      expect: new RegExp(`^NamespaceMetadataUpdated on namespace-1: .*event ${namespace.id} is already in the log with different content`),
    },
    // What jsonb cannot store is refused by validation, naming the place.
    { text: namespaceCreated({ namespace_id: 8, name: 'eight', metadata_: { note: 'a\u0000b' } }), expect: /NamespaceCreated: \/data\/metadata_\/note: must not contain NUL/ },
    // The database's own refusals of an event's content: the line is reported, the file goes on.
    {
      text: JSON.stringify(envelopeFor('SettingStored', { id: 2, prefix: longPrefix, key: 'k', value: 1 })),
      expect: /^SettingStored on keyvaluestore-[0-9a-f]{86}\.\.\. \(\d+ characters\): the database refused this event: index row size \d+ exceeds btree version 4 maximum 2704/,
    },
    { text: JSON.stringify(valid.environment), valid: valid.environment },
    { text: JSON.stringify(valid.channel), valid: valid.channel },
    { text: JSON.stringify(valid.setting), valid: valid.setting },
    // The same line again: a duplicate, not a refusal.
    { text: JSON.stringify(valid.setting) },
  ];
  const file = writeFile(t, lines.map((line) => line.text));

  const result = await cli(db, ['append', file]);
  t.is(result.code, 1, shown(result));
  const refused = lines.flatMap((line, index) => (line.expect ? [{ number: index + 1, expect: line.expect }] : []));
  const validEnvelopes = lines.flatMap((line) => (line.valid ? [line.valid] : []));
  t.true(result.stdout.includes(summary(validEnvelopes.length, 1, refused.length)), shown(result));

  const reported = rejections(result.stdout);
  t.deepEqual([...reported.keys()], refused.map((r) => r.number), shown(result));
  for (const { number, expect } of refused) t.regex(reported.get(number) ?? '', expect, `line ${number}`);

  const events = await readLog(db.log);
  t.deepEqual(
    events.map((e) => ({ id: e.id, type: e.type, stream: e.stream, data: e.data })),
    validEnvelopes.map((v) => ({ id: v.id, type: v.type, stream: v.stream, data: v.data })),
  );
  // Nothing of a refused line: no other stream, and the namespace's name is still its own.
  t.deepEqual([...new Set(events.map((e) => e.stream))].sort(), [...new Set(validEnvelopes.map((v) => v.stream))].sort());
  t.deepEqual((await db.log.readStream('namespace-1')).map((e) => e.id), [valid.namespace.id, valid.metadata.id]);
});

test('append: a batch size of 1 reports the same refusals', async (t) => {
  const db = await database(t);
  const namespace = envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'default' });
  const lines = [
    JSON.stringify(namespace),
    'nope',
    JSON.stringify(envelopeFor('NamespaceCreated', { namespace_id: 2, name: 'default' })),
    JSON.stringify(envelopeFor('EnvironmentCreated', { environment_id: 1, namespace_id: 1, name: 'env' })),
  ];
  const result = await cli(db, ['append', '--batch-size', '1', writeFile(t, lines)]);
  t.is(result.code, 1, shown(result));
  t.true(result.stdout.includes(summary(2, 0, 2)), shown(result));
  t.deepEqual([...rejections(result.stdout).keys()], [2, 3]);
});

test('append: the same event twice in one file (one batch) is one append and one duplicate', async (t) => {
  const db = await database(t);
  const setting = envelopeFor('SettingStored', { id: 1, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel'] });
  const usage = envelopeFor('StorageUsageReported', { disk_usage: 1, free_storage: 2, total_storage: 3 });
  const lines = ndjson([setting, usage, setting, usage]);
  const result = await cli(db, ['append', writeFile(t, lines)]);
  t.is(result.code, 0, shown(result));
  t.true(result.stdout.includes(summary(2, 2, 0)), shown(result));
  t.deepEqual((await readLog(db.log)).map((e) => e.id), [setting.id, usage.id]);
});

// ---------------------------------------------------------------------------------------------
// 5. standard input

test('append - reads the envelopes from standard input', async (t) => {
  const db = await database(t);
  const history = realisticHistory();
  const result = await cli(db, ['append', '-'], ndjson(history).join('\n'));
  t.is(result.code, 0, shown(result));
  t.true(result.stdout.includes(summary(history.length, 0, 0)), shown(result));
  t.deepEqual((await readLog(db.log)).map((e) => e.id), history.map((h) => h.id));
});

// ---------------------------------------------------------------------------------------------
// 6. help, usage errors, missing file

test('--help of the program, append and export exits 0 and prints usage', async (t) => {
  const unused = { url: 'postgres://postgres@127.0.0.1:1/unused' };
  const program = await cli(unused, ['--help']);
  t.is(program.code, 0, shown(program));
  t.regex(program.stdout, /Usage: conda-store-events/);
  t.regex(program.stdout, /append/);
  t.regex(program.stdout, /export/);

  const append = await cli(unused, ['append', '--help']);
  t.is(append.code, 0, shown(append));
  t.regex(append.stdout, /Usage: conda-store-events append .*<file>/);
  t.regex(append.stdout, /--batch-size/);

  const exported = await cli(unused, ['export', '--help']);
  t.is(exported.code, 0, shown(exported));
  t.regex(exported.stdout, /Usage: conda-store-events export/);
  t.regex(exported.stdout, /--from/);
  t.regex(exported.stdout, /--stream/);
});

test('usage errors exit 2 with one error on stderr, no stack trace, and touch nothing', async (t) => {
  const db = await database(t);
  const cases: [string[], RegExp][] = [
    [['--bogus'], /unknown option '--bogus'/],
    [['append', '--bogus', 'x.ndjson'], /unknown option '--bogus'/],
    [['export', '--bogus'], /unknown option '--bogus'/],
    [['no-such-command'], /unknown command 'no-such-command'/],
    [['append'], /missing required argument 'file'/],
    [['export', '--from', 'zero'], /--from must be a positive integer, got "zero"/],
    [['append', '--batch-size', '0', 'x.ndjson'], /--batch-size must be a positive integer, got "0"/],
    // Regressions: an extra argument was ignored (append a.ndjson b.ndjson appended a alone); an
    // empty --stream exported the whole log; --from took 0x2 and 1e1, and failed on huge values.
    [['append', 'a.ndjson', 'b.ndjson'], /too many arguments for 'append'/],
    [['export', 'extra'], /too many arguments for 'export'/],
    [['export', '--stream', ''], /--stream must not be empty/],
    [['export', '--from', '1e1'], /--from must be a positive integer, got "1e1"/],
    [['export', '--from', '99999999999999999999'], /--from must be at most 9007199254740991/],
  ];
  for (const [args, message] of cases) {
    const result = await cli(db, args);
    const context = `${args.join(' ')}: ${shown(result)}`;
    t.is(result.code, 2, context);
    t.regex(result.stderr, /^error: /m, context);
    t.regex(result.stderr, message, context);
    t.notRegex(result.stderr, /^\s+at /m, `no stack trace: ${context}`);
    t.is(result.stdout, '', context);
  }
  t.is(await db.log.headPosition(), 0);
});

test('append of a missing file exits 2 with an error naming the file', async (t) => {
  const db = await database(t);
  const missing = path.join(tempDir(t), 'no-such-file.ndjson');
  const result = await cli(db, ['append', missing]);
  t.is(result.code, 2, shown(result));
  t.true(result.stderr.includes(missing), shown(result));
  t.regex(result.stderr, /^error: /m);
  t.is(result.stdout, '');
});

// ---------------------------------------------------------------------------------------------
// 7. no database

test('append with no database server listening exits non-zero with an error on stderr', async (t) => {
  const file = writeFile(t, ndjson(realisticHistory().slice(0, 3)));
  const result = await runCli(['append', file], { env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/conda_store_events' } });
  t.not(result.code, 0, shown(result));
  t.not(result.code, null, shown(result));
  t.regex(result.stderr, /^error: .*ECONNREFUSED/m, shown(result));
  t.notRegex(result.stderr, /^\s+at /m, 'no stack trace');
  t.is(result.stdout, '');
});

test('export with no database server listening exits non-zero with an error on stderr', async (t) => {
  const result = await runCli(['export'], { env: { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/conda_store_events' } });
  t.not(result.code, 0, shown(result));
  t.regex(result.stderr, /^error: .*ECONNREFUSED/m, shown(result));
  t.is(result.stdout, '');
});

// Regression (found by a review): a command that failed with its progress bar on the terminal left
// the bar running: the terminal stayed without its cursor and line wrapping (the bar hides both
// while it draws, and only its stop gives them back), and the error went onto the bar's line.
test('append that fails on a terminal gives the terminal its cursor and line wrapping back, and writes its error on a line of its own', async (t) => {
  const db = await database(t);
  const directory = tempDir(t); // read as the input: EISDIR once the bar is drawn
  // util-linux's script(1) runs the command on a pseudo-terminal and copies what it draws.
  const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, cliPath, 'append', directory].map(quote).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], { env: cliEnv({ DATABASE_URL: db.url }), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin!.end();
  const result = await waitForExit(child);
  t.is(result.code, 2, shown(result));
  const hidden = result.stdout.indexOf('\u001b[?25l');
  t.true(hidden >= 0, `the bar was drawn: ${JSON.stringify(result.stdout)}`);
  t.true(result.stdout.indexOf('\u001b[?25h', hidden) > hidden, `the cursor comes back: ${JSON.stringify(result.stdout)}`);
  t.true(result.stdout.indexOf('\u001b[?7h', hidden) > hidden, `line wrapping comes back: ${JSON.stringify(result.stdout)}`);
  t.is(result.stdout.split('\u001b[?25h').length, 2, `the bar is stopped once: ${JSON.stringify(result.stdout)}`);
  t.regex(result.stdout, /(^|\n)error: append stopped at line 1: EISDIR/, JSON.stringify(result.stdout));
});
