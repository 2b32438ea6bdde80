/**
 * The EventLog contract: every backend runs this same suite (test/log-postgres.test.ts, and the
 * EventStoreDB backend's test when a server is configured). Given a factory for a fresh, empty
 * log, it checks what contract.md promises of "The event log".
 */
import { randomUUID } from 'node:crypto';
import type { ExecutionContext, TestFn } from 'ava';
import {
  DuplicateKeyError,
  EventIdConflictError,
  FencedError,
  PreconditionFailedError,
  UnknownIdKindError,
  WrongExpectedVersionError,
} from '../src/log/errors.js';
import type { AppendRequest, EventInput, EventLog, LogBatch, RecordedEvent } from '../src/log/types.js';

export type LogFactory = (t: ExecutionContext) => Promise<EventLog>;

export function event(type = 'Tested', data: Record<string, unknown> = {}): EventInput {
  return { id: randomUUID(), type, data: { n: Math.random(), ...data }, metadata: { producer: 'test' } };
}

export function events(count: number, type = 'Tested'): EventInput[] {
  return Array.from({ length: count }, (_, i) => event(type, { i }));
}

export async function collect(iterable: AsyncIterable<RecordedEvent[]>): Promise<RecordedEvent[]> {
  const all: RecordedEvent[] = [];
  for await (const batch of iterable) all.push(...batch);
  return all;
}

/** Reads a live subscription until `count` events have arrived (no sleeps: the condition ends it). */
export async function takeFromSubscription(log: EventLog, count: number, from = 1, batchSize = 100): Promise<RecordedEvent[]> {
  const controller = new AbortController();
  const received: RecordedEvent[] = [];
  for await (const batch of log.subscribe({ from, batchSize, signal: controller.signal })) {
    received.push(...batch);
    if (received.length >= count) controller.abort();
  }
  return received;
}

export function logContract(test: TestFn, makeLog: LogFactory, backend: string): void {
  const it = (title: string, body: (t: ExecutionContext, log: EventLog) => Promise<void>) =>
    test(`${backend}: ${title}`, async (t) => body(t, await makeLog(t)));

  it('appends to a new stream with versions from 0 and increasing positions', async (t, log) => {
    const appended = await log.append({ stream: 'build-1', expectedVersion: 'no_stream', events: events(3) });
    t.deepEqual(appended.map((e) => e.streamVersion), [0, 1, 2]);
    t.true(appended.every((e, i) => i === 0 || e.globalPosition > appended[i - 1]!.globalPosition));
    t.true(appended.every((e) => !e.duplicate && e.stream === 'build-1'));
    const read = await log.readStream('build-1');
    t.deepEqual(read.map((e) => e.id), appended.map((e) => e.id));
    t.is(await log.headPosition(), appended[2]!.globalPosition);
  });

  it('stores type, data and metadata as given', async (t, log) => {
    const input = event('BuildStarted', { build_id: 7, nested: { a: [1, 'x', null] } });
    await log.append({ stream: 'build-7', events: [input] });
    const [stored] = await log.readStream('build-7');
    t.is(stored!.type, 'BuildStarted');
    t.deepEqual(stored!.data, input.data);
    t.deepEqual(stored!.metadata, input.metadata);
    t.true(stored!.recordedAt instanceof Date);
  });

  it('expectedVersion: a number must equal the current version', async (t, log) => {
    await log.append({ stream: 's-1', expectedVersion: 'no_stream', events: events(2) });
    const error = await t.throwsAsync(log.append({ stream: 's-1', expectedVersion: 0, events: events(1) }), {
      instanceOf: WrongExpectedVersionError,
    });
    t.is(error!.stream, 's-1');
    t.is(error!.expected, 0);
    t.is(error!.actual, 1);
    await log.append({ stream: 's-1', expectedVersion: 1, events: events(1) });
    t.is((await log.readStream('s-1')).length, 3);
  });

  it('expectedVersion: a number above the current version is refused too (no gap in the stream)', async (t, log) => {
    await log.append({ stream: 's-6', expectedVersion: 'no_stream', events: events(2) });
    const error = await t.throwsAsync(log.append({ stream: 's-6', expectedVersion: 4, events: events(1) }), {
      instanceOf: WrongExpectedVersionError,
    });
    t.is(error!.expected, 4);
    t.is(error!.actual, 1);
    t.deepEqual((await log.readStream('s-6')).map((e) => e.streamVersion), [0, 1]);
  });

  it('expectedVersion: no_stream refuses an existing stream', async (t, log) => {
    await log.append({ stream: 's-2', events: events(1) });
    const error = await t.throwsAsync(log.append({ stream: 's-2', expectedVersion: 'no_stream', events: events(1) }), {
      instanceOf: WrongExpectedVersionError,
    });
    t.is(error!.expected, 'no_stream');
    t.is(error!.actual, 0);
    t.is((await log.readStream('s-2')).length, 1);
  });

  it('expectedVersion: stream_exists refuses a missing stream', async (t, log) => {
    const error = await t.throwsAsync(log.append({ stream: 's-3', expectedVersion: 'stream_exists', events: events(1) }), {
      instanceOf: WrongExpectedVersionError,
    });
    t.is(error!.actual, 'no_stream');
    t.is(await log.headPosition(), 0);
    await log.append({ stream: 's-3', events: events(1) });
    await log.append({ stream: 's-3', expectedVersion: 'stream_exists', events: events(1) });
    t.is((await log.readStream('s-3')).length, 2);
  });

  it('expectedVersion: a number refuses a missing stream', async (t, log) => {
    const error = await t.throwsAsync(log.append({ stream: 's-4', expectedVersion: 0, events: events(1) }), {
      instanceOf: WrongExpectedVersionError,
    });
    t.is(error!.actual, 'no_stream');
  });

  it('expectedVersion: any always appends', async (t, log) => {
    await log.append({ stream: 's-5', expectedVersion: 'any', events: events(1) });
    await log.append({ stream: 's-5', expectedVersion: 'any', events: events(1) });
    t.deepEqual((await log.readStream('s-5')).map((e) => e.streamVersion), [0, 1]);
  });

  it('an append of several streams is atomic: one refusal writes nothing', async (t, log) => {
    await log.append({ stream: 'b', events: events(1) });
    await t.throwsAsync(
      log.append([
        { stream: 'a', expectedVersion: 'no_stream', events: events(2) },
        { stream: 'b', expectedVersion: 'no_stream', events: events(1) },
      ]),
      { instanceOf: WrongExpectedVersionError },
    );
    t.deepEqual(await log.readStream('a'), []);
    t.is((await log.readStream('b')).length, 1);
  });

  // Regression: an empty request was dropped with its expected version, and the rest of the call
  // written although that version did not hold; an expected version beyond int4 or not an integer
  // failed in the database with an error that did not name it.
  it('an append no log could honour (an expected version no stream can have, an empty request with conditions, one id twice) is refused, naming why; nothing is written', async (t, log) => {
    await log.append({ stream: 'e-1', events: events(3) });
    for (const expectedVersion of [2 ** 31, 1.5, -1, 'latest'] as never[]) {
      await t.throwsAsync(log.append({ stream: 'e-2', expectedVersion, events: events(1) }), { instanceOf: RangeError, message: /^append to e-2: expectedVersion must be a version \(an integer from 0 to 2147483647\), no_stream, stream_exists or any \(got / });
    }
    await t.throwsAsync(log.append([{ stream: 'e-2', events: events(1) }, { stream: 'e-1', expectedVersion: 7, events: [] }]), {
      instanceOf: RangeError,
      message: /^append to e-1: a request without events cannot carry an expected version/,
    });
    // One id twice in a call, in any spelling of the UUID.
    const [once] = events(1);
    await t.throwsAsync(log.append([{ stream: 'e-2', events: [once!] }, { stream: 'e-3', events: [{ ...once!, id: once!.id.toUpperCase() }] }]), {
      instanceOf: EventIdConflictError,
      message: `append to e-3: event id ${once!.id.toUpperCase()} appears twice in one append`,
    });
    t.deepEqual(await log.readStream('e-2'), []);
    // Without conditions, an empty request is nothing to do.
    t.deepEqual(await log.append({ stream: 'e-1', expectedVersion: 'any', events: [] }), []);
  });

  // Regression: the results, and the versions a log remembers, were built from the request objects
  // after the statement: a caller that reused its request once it had called (another stream) got
  // a result naming that stream, and the remembered version let the next append leave a gap there.
  it('an append is of the requests as they were when it was called, whatever the caller does with them next', async (t, log) => {
    const [first] = await log.append({ stream: 'r-a', events: events(6) }).then((appended) => appended.slice(-1));
    await log.append({ stream: 'r-b', events: events(1) });
    const request: AppendRequest = { stream: 'r-a', expectedVersion: first!.streamVersion, events: events(1, 'Called') };
    const appending = log.append(request);
    request.stream = 'r-b';
    request.events[0]!.type = 'Changed';
    request.events.push(...events(1));
    const [appended] = await appending;
    t.like(appended, { stream: 'r-a', streamVersion: 6 });
    t.deepEqual((await log.readStream('r-a')).slice(-1).map((e) => e.type), ['Called']);
    await t.throwsAsync(log.append({ stream: 'r-b', expectedVersion: 6, events: events(1) }), { instanceOf: WrongExpectedVersionError });
    t.deepEqual((await log.readStream('r-b')).map((e) => e.streamVersion), [0]);
  });

  it('requests for the same stream in one append are checked in order', async (t, log) => {
    const appended = await log.append([
      { stream: 'c', expectedVersion: 'no_stream', events: events(1) },
      { stream: 'c', expectedVersion: 0, events: events(2) },
    ]);
    t.deepEqual(appended.map((e) => e.streamVersion), [0, 1, 2]);
  });

  it('is idempotent: re-appending the same events reports the same positions and writes nothing', async (t, log) => {
    const batch = events(3);
    const first = await log.append({ stream: 'd', expectedVersion: 'no_stream', events: batch });
    const again = await log.append({ stream: 'd', expectedVersion: 'no_stream', events: batch });
    t.deepEqual(again.map((e) => [e.id, e.globalPosition, e.streamVersion]), first.map((e) => [e.id, e.globalPosition, e.streamVersion]));
    t.true(again.every((e) => e.duplicate));
    t.is((await collect(log.readAll())).length, 3);
  });

  it('a batch mixing duplicates and new requests appends only the new ones', async (t, log) => {
    const old = events(1);
    await log.append({ stream: 'e', events: old });
    const mixed = await log.append([
      { stream: 'e', events: old },
      { stream: 'f', events: events(1) },
    ]);
    t.deepEqual(mixed.map((e) => e.duplicate), [true, false]);
    t.is((await collect(log.readAll())).length, 2);
  });

  it('the same id with different content is an error', async (t, log) => {
    const original = event('X', { v: 1 });
    await log.append({ stream: 'g', events: [original] });
    await t.throwsAsync(log.append({ stream: 'g', events: [{ ...original, data: { v: 2 } }] }), { instanceOf: EventIdConflictError });
    await t.throwsAsync(log.append({ stream: 'other', events: [original] }), { instanceOf: EventIdConflictError });
    t.is((await collect(log.readAll())).length, 1);
  });

  // Regression: the refusal named the stream only (eventId was ''), and the caller could not tell
  // which of its events the log already held.
  it('a request mixing events already in the log with new ones is refused, naming the events already there; nothing is appended', async (t, log) => {
    const [a, b, c, d] = events(4);
    await log.append({ stream: 'h', events: [a!, b!] });
    const error = await t.throwsAsync(log.append({ stream: 'h', events: [c!, { ...b! }, { ...a!, id: a!.id.toUpperCase() }, d!] }), { instanceOf: EventIdConflictError });
    t.like(error, { stream: 'h', eventId: b!.id });
    t.true(error!.message.includes(`already in the log: ${b!.id}, ${a!.id}`), error!.message);
    t.deepEqual((await log.readStream('h')).map((e) => e.id), [a!.id, b!.id]);
    t.is((await collect(log.readAll())).length, 2);
  });

  it('unique keys: a duplicate claim is refused with the key named, and nothing is appended', async (t, log) => {
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'default' }] });
    const error = await t.throwsAsync(
      log.append({ stream: 'namespace-2', events: events(1), claims: [{ name: 'namespace.name', value: 'default' }] }),
      { instanceOf: DuplicateKeyError },
    );
    t.is(error!.key, 'namespace.name');
    t.is(error!.value, 'default');
    t.is(error!.takenBy, 'namespace-1');
    t.regex(error!.message, /namespace\.name.*default/);
    t.deepEqual(await log.readStream('namespace-2'), []);
  });

  it('unique keys: two claims of one key in one append are refused', async (t, log) => {
    await t.throwsAsync(
      log.append([
        { stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'x' }] },
        { stream: 'namespace-2', events: events(1), claims: [{ name: 'namespace.name', value: 'x' }] },
      ]),
      { instanceOf: DuplicateKeyError },
    );
    t.is(await log.headPosition(), 0);
  });

  it('unique keys: a stream may claim again a key it holds, and its new keys of the same call are taken', async (t, log) => {
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'a' }] });
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'a' }, { name: 'namespace.name', value: 'b' }] });
    const error = await t.throwsAsync(log.append({ stream: 'namespace-2', events: events(1), claims: [{ name: 'namespace.name', value: 'b' }] }), {
      instanceOf: DuplicateKeyError,
    });
    t.is(error!.takenBy, 'namespace-1');
    t.is(await log.headPosition(), 2);
  });

  it('unique keys: a second claim by the holder is a duplicate unless it names the same parent', async (t, log) => {
    await log.append({ stream: 'build-1', events: events(1), claims: [{ name: 'build_artifact.id', value: '9', parent: 'event-a' }] });
    const error = await t.throwsAsync(log.append({ stream: 'build-1', events: events(1), claims: [{ name: 'build_artifact.id', value: '9', parent: 'event-b' }] }), {
      instanceOf: DuplicateKeyError,
    });
    t.is(error!.takenBy, 'build-1');
    await log.append({ stream: 'build-1', events: events(1), claims: [{ name: 'build_artifact.id', value: '9', parent: 'event-a' }] });
    t.is((await log.readStream('build-1')).length, 2, 'the refused append wrote nothing');
  });

  it('preconditions: a key held by a given stream (holder), also when claimed earlier in the same call', async (t, log) => {
    const deletes = (stream: string) => ({
      stream,
      events: events(1),
      preconditions: [{ kind: 'key' as const, name: 'build_artifact.id', value: '9', holder: stream, message: `${stream}: no artifact 9 of its own` }],
    });
    const stores = (stream: string) => ({ stream, events: events(1), claims: [{ name: 'build_artifact.id', value: '9' }] });
    // Claimed earlier in the call by the holder: accepted.
    await log.append([stores('build-1'), deletes('build-1')]);
    // Held by another stream: refused, nothing appended.
    await t.throwsAsync(log.append(deletes('build-2')), { instanceOf: PreconditionFailedError, message: 'build-2: no artifact 9 of its own' });
    t.deepEqual(await log.readStream('build-2'), []);
    await log.append(deletes('build-1'));
  });

  it('preconditions: a key claimed in the same call counts for later groups only, whatever its name, and each group asking is answered for itself', async (t, log) => {
    const needsBuild = (stream: string) => ({
      stream,
      events: events(1),
      preconditions: [{ kind: 'key' as const, name: 'conda_package_build.id', value: '7', message: `${stream}: no package build 7` }],
    });
    // Asked before the claim in the call: refused, though the key is in the table when it is checked.
    await t.throwsAsync(
      log.append([needsBuild('build-1'), { stream: 'conda_package-1', events: events(1), claims: [{ name: 'conda_package_build.id', value: '7' }] }]),
      { instanceOf: PreconditionFailedError, message: 'build-1: no package build 7' },
    );
    t.is(await log.headPosition(), 0);
    // The same question asked by a group after the claim and by one before it: the one before fails.
    await t.throwsAsync(
      log.append([
        needsBuild('build-1'),
        { stream: 'conda_package-1', events: events(1), claims: [{ name: 'conda_package_build.id', value: '7' }] },
        needsBuild('build-2'),
      ]),
      { instanceOf: PreconditionFailedError, message: 'build-1: no package build 7' },
    );
    // After the claim only: accepted, and asked again by a later call.
    await log.append([{ stream: 'conda_package-1', events: events(1), claims: [{ name: 'conda_package_build.id', value: '7' }] }, needsBuild('build-1'), needsBuild('build-2')]);
    await log.append(needsBuild('build-3'));
    t.is((await collect(log.readAll())).length, 4);
  });

  it('unique keys: a released key can be claimed again', async (t, log) => {
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'namespace.name', value: 'n' }] });
    await log.append({ stream: 'namespace-1', events: events(1), releases: [{ name: 'namespace.name' }] });
    await log.append({ stream: 'namespace-2', events: events(1), claims: [{ name: 'namespace.name', value: 'n' }] });
    t.pass();
  });

  it('preconditions: exists, version and no_children are checked with the append', async (t, log) => {
    await t.throwsAsync(
      log.append({ stream: 'environment-1', events: events(1), preconditions: [{ kind: 'exists', stream: 'namespace-1', message: 'namespace 1 does not exist' }] }),
      { instanceOf: PreconditionFailedError, message: 'namespace 1 does not exist' },
    );
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'stream', value: 'namespace-1' }] });
    await log.append({
      stream: 'environment-1',
      events: events(1),
      claims: [{ name: 'stream', value: 'environment-1', parent: 'namespace-1' }],
      preconditions: [{ kind: 'exists', stream: 'namespace-1', message: 'namespace 1 does not exist' }],
    });
    await t.throwsAsync(
      log.append({ stream: 'namespace-1', events: events(1), preconditions: [{ kind: 'no_children', stream: 'namespace-1', message: 'namespace 1 still has environments' }] }),
      { instanceOf: PreconditionFailedError },
    );
    await t.throwsAsync(
      log.append({ stream: 'x', events: events(1), preconditions: [{ kind: 'version', stream: 'namespace-1', version: 5, message: 'namespace 1 changed' }] }),
      { instanceOf: PreconditionFailedError },
    );
    await log.append({ stream: 'x', events: events(1), preconditions: [{ kind: 'version', stream: 'namespace-1', version: 0, message: 'namespace 1 changed' }] });
    t.is((await collect(log.readAll())).length, 3);
  });

  it('preconditions and claims apply group by group: a batch may create a parent and then its child', async (t, log) => {
    await log.append([
      { stream: 'namespace-1', events: events(1), claims: [{ name: 'stream', value: 'namespace-1' }] },
      {
        stream: 'environment-1',
        events: events(1),
        claims: [{ name: 'stream', value: 'environment-1', parent: 'namespace-1' }],
        preconditions: [{ kind: 'exists', stream: 'namespace-1', message: 'namespace 1 does not exist' }],
      },
      { stream: 'x', events: events(1), preconditions: [{ kind: 'key', name: 'stream', value: 'environment-1', message: 'no environment 1' }] },
    ]);
    await t.throwsAsync(
      log.append([
        { stream: 'environment-2', events: events(1), preconditions: [{ kind: 'exists', stream: 'namespace-2', message: 'namespace 2 does not exist' }] },
        { stream: 'namespace-2', events: events(1), claims: [{ name: 'stream', value: 'namespace-2' }] },
      ]),
      { instanceOf: PreconditionFailedError, message: 'namespace 2 does not exist' },
    );
    t.is((await collect(log.readAll())).length, 3);
  });

  it('releases apply in call order within one append: the groups before a purge and after it see it in order', async (t, log) => {
    await log.append({ stream: 'namespace-1', events: events(1), claims: [{ name: 'stream', value: 'namespace-1' }, { name: 'namespace.name', value: 'default' }] });
    // One call: a group before the purge, the purge (it gives the name up), a namespace that takes
    // the name, and an environment that needs the groups before it.
    await log.append([
      { stream: 'namespace-3', events: events(1), claims: [{ name: 'stream', value: 'namespace-3' }] },
      { stream: 'namespace-1', events: events(1), releases: [{ name: 'namespace.name' }] },
      { stream: 'namespace-2', events: events(1), claims: [{ name: 'stream', value: 'namespace-2' }, { name: 'namespace.name', value: 'default' }] },
      {
        stream: 'environment-1',
        events: events(1),
        claims: [{ name: 'stream', value: 'environment-1', parent: 'namespace-2' }],
        preconditions: [
          { kind: 'exists', stream: 'namespace-2', message: 'namespace 2 does not exist' },
          { kind: 'exists', stream: 'namespace-3', message: 'namespace 3 does not exist' },
        ],
      },
    ]);
    t.is(await log.headPosition(), 5);
    // The other way round in one call: the claim comes before the release, so the name is still taken.
    const error = await t.throwsAsync(
      log.append([
        { stream: 'namespace-5', events: events(1), claims: [{ name: 'namespace.name', value: 'default' }] },
        { stream: 'namespace-2', events: events(1), releases: [{ name: 'namespace.name' }] },
      ]),
      { instanceOf: DuplicateKeyError },
    );
    t.is(error!.takenBy, 'namespace-2');
    // A precondition after the purge in the same call sees the children it left.
    await t.throwsAsync(
      log.append([
        { stream: 'namespace-3', events: events(1), releases: [{ name: 'stream' }] },
        { stream: 'environment-1', events: events(1), preconditions: [{ kind: 'exists', stream: 'namespace-3', message: 'namespace 3 is gone' }] },
      ]),
      { instanceOf: PreconditionFailedError, message: 'namespace 3 is gone' },
    );
    t.is(await log.headPosition(), 5);
  });

  it('reads a stream forward and backward from a version', async (t, log) => {
    await log.append({ stream: 'r', events: events(5) });
    const versions = async (options: Parameters<EventLog['readStream']>[1]) => (await log.readStream('r', options)).map((e) => e.streamVersion);
    t.deepEqual(await versions({}), [0, 1, 2, 3, 4]);
    t.deepEqual(await versions({ fromVersion: 2 }), [2, 3, 4]);
    t.deepEqual(await versions({ fromVersion: 1, maxCount: 2 }), [1, 2]);
    t.deepEqual(await versions({ direction: 'backward' }), [4, 3, 2, 1, 0]);
    t.deepEqual(await versions({ direction: 'backward', fromVersion: 3, maxCount: 2 }), [3, 2]);
    t.deepEqual(await log.readStream('missing'), []);
  });

  it('reads the global log from a position in batches', async (t, log) => {
    for (let i = 0; i < 5; i++) await log.append({ stream: `s-${i}`, events: events(5) });
    const batches: RecordedEvent[][] = [];
    for await (const batch of log.readAll({ batchSize: 7 })) batches.push(batch);
    // A batch may come back short while another transaction of the server is in flight.
    t.true(batches.every((b) => b.length >= 1 && b.length <= 7));
    const all = batches.flat();
    t.is(all.length, 25);
    t.true(all.every((e, i) => i === 0 || e.globalPosition > all[i - 1]!.globalPosition));
    const from = all[10]!.globalPosition;
    const rest = await collect(log.readAll({ from, batchSize: 100 }));
    t.deepEqual(rest.map((e) => e.id), all.slice(10).map((e) => e.id));
  });

  // Regression (found by a review): a batch size of 0 read nothing and, live, waited for ever.
  it('a read or a subscription with a batch size that is not a positive integer is refused, naming it', async (t, log) => {
    await log.append({ stream: 's-1', events: events(1) });
    for (const batchSize of [0, -1, 2.5]) {
      await t.throwsAsync(collect(log.readAll({ batchSize })), { instanceOf: RangeError, message: `batchSize must be a positive integer, got ${batchSize}` });
      await t.throwsAsync(log.subscribe({ batchSize })[Symbol.asyncIterator]().next(), { instanceOf: RangeError, message: `batchSize must be a positive integer, got ${batchSize}` });
    }
  });

  it('reads only the event types asked for; each batch says how far the log was read, past events of other types', async (t, log) => {
    for (let i = 0; i < 4; i++) {
      await log.append({ stream: `mixed-${i}`, events: [...events(2, 'Wanted'), ...events(3, 'Other'), ...events(1, 'AlsoWanted')] });
    }
    await log.append({ stream: 'tail', events: events(4, 'Other') });
    const head = await log.headPosition();
    const all = await collect(log.readAll());
    const batches: LogBatch[] = [];
    for await (const batch of log.readAll({ types: ['Wanted', 'AlsoWanted'], batchSize: 5 })) batches.push(batch);
    const read = batches.flat();
    t.deepEqual(read.map((e) => e.id), all.filter((e) => e.type !== 'Other').map((e) => e.id));
    t.true(batches.every((b) => b.every((e) => e.globalPosition <= b.position)), 'a batch position is at least its last event');
    t.true(batches.every((b, i) => i === 0 || b.position > batches[i - 1]!.position), 'positions move forward');
    t.is(batches.at(-1)!.position, head, 'the events of other types at the end are read past');
    // From a position, and nothing asked for: no events, but the read still gets to the head.
    const from = all[10]!.globalPosition;
    t.deepEqual((await collect(log.readAll({ from, types: ['Wanted'] }))).map((e) => e.id), all.slice(10).filter((e) => e.type === 'Wanted').map((e) => e.id));
    const none: LogBatch[] = [];
    for await (const batch of log.readAll({ types: [] })) none.push(batch);
    t.deepEqual(none.flat(), []);
    t.is(none.at(-1)!.position, head);
  });

  it('a subscription of some event types receives them live, and its position passes the others as they come', async (t, log) => {
    await log.append({ stream: 'before', events: [...events(1, 'Other'), ...events(1, 'Wanted')] });
    const controller = new AbortController();
    t.teardown(() => controller.abort());
    const received: RecordedEvent[] = [];
    let position = 0;
    let target = Infinity;
    const reading = (async () => {
      for await (const batch of log.subscribe({ types: ['Wanted'], signal: controller.signal })) {
        received.push(...batch);
        position = batch.position;
        if (position >= target) return;
      }
    })();
    await log.append({ stream: 'live', events: [...events(2, 'Wanted'), ...events(3, 'Other')] });
    await log.append({ stream: 'live', events: events(2, 'Other') });
    target = await log.headPosition();
    if (position >= target) controller.abort(); // read to the end already: stop waiting for more
    await reading;
    t.deepEqual(received.map((e) => e.stream), ['before', 'live', 'live']);
    t.true(received.every((e) => e.type === 'Wanted'));
    t.is(position, target);
  });

  it('a subscription catches up, then receives live appends', async (t, log) => {
    await log.append({ stream: 'old', events: events(3) });
    const live = takeFromSubscription(log, 6, 1, 2);
    await log.append({ stream: 'new', events: events(3) });
    const received = await live;
    t.is(received.length, 6);
    t.deepEqual(received.map((e) => e.stream), ['old', 'old', 'old', 'new', 'new', 'new']);
  });

  it('allocates distinct ids per kind and refuses an unknown kind', async (t, log) => {
    const [a, b] = await Promise.all([log.allocateIds('build', 50), log.allocateIds('build', 50)]);
    t.is(new Set([...a!, ...b!]).size, 100);
    t.true(a!.every((id) => Number.isInteger(id) && id > 0));
    await t.throwsAsync(log.allocateIds('no_such_kind', 1), { instanceOf: UnknownIdKindError });
  });

  it('8 writers racing for the same stream version: exactly one wins each version', async (t, log) => {
    const winners: number[] = [];
    let refusals = 0;
    for (let version = -1; version < 9; version++) {
      const attempts = await Promise.allSettled(
        Array.from({ length: 8 }, () =>
          log.append({ stream: 'contended', expectedVersion: version < 0 ? 'no_stream' : version, events: events(1) }),
        ),
      );
      const won = attempts.filter((a) => a.status === 'fulfilled');
      t.is(won.length, 1, `exactly one winner for expected version ${version}`);
      for (const attempt of attempts) {
        if (attempt.status === 'rejected') {
          t.true(attempt.reason instanceof WrongExpectedVersionError);
          refusals++;
        }
      }
      winners.push(version);
    }
    t.is(refusals, 70);
    t.deepEqual((await log.readStream('contended')).map((e) => e.streamVersion), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('8 writers on distinct streams while a subscription runs: every event once, in position order', async (t, log) => {
    const perWriter = 60;
    const subscription = takeFromSubscription(log, 8 * perWriter, 1, 25);
    await Promise.all(
      Array.from({ length: 8 }, async (_, writer) => {
        for (let i = 0; i < perWriter / 3; i++) {
          await log.append({ stream: `writer-${writer}`, events: events(3) });
        }
      }),
    );
    const received = await subscription;
    t.is(received.length, 8 * perWriter);
    t.is(new Set(received.map((e) => e.id)).size, 8 * perWriter);
    t.true(received.every((e, i) => i === 0 || e.globalPosition > received[i - 1]!.globalPosition), 'position order');
    for (let writer = 0; writer < 8; writer++) {
      const versions = received.filter((e) => e.stream === `writer-${writer}`).map((e) => e.streamVersion);
      t.deepEqual(versions, Array.from({ length: perWriter }, (_, i) => i));
    }
  });

  it('fences: raising one returns epochs from 1, one more each time, each fence on its own', async (t, log) => {
    t.deepEqual(await log.raiseFence('ingest:a'), { name: 'ingest:a', epoch: 1 });
    t.deepEqual(await log.raiseFence('ingest:a'), { name: 'ingest:a', epoch: 2 });
    t.deepEqual(await log.raiseFence('ingest:b'), { name: 'ingest:b', epoch: 1 });
  });

  it('fences: an append with the current hold goes in, by every path (one event, several, keys, several streams)', async (t, log) => {
    const fence = await log.raiseFence('writer');
    await log.append({ stream: 'f-1', expectedVersion: 'no_stream', events: events(1) }, { fence });
    await log.append({ stream: 'f-1', expectedVersion: 0, events: events(2) }, { fence });
    await log.append({ stream: 'f-2', events: events(1), claims: [{ name: 'namespace.name', value: 'fenced' }] }, { fence });
    await log.append([{ stream: 'f-3', events: events(1) }, { stream: 'f-4', events: events(1) }], { fence });
    t.deepEqual((await log.readStream('f-1')).map((e) => e.streamVersion), [0, 1, 2]);
    t.is(await log.headPosition(), 6);
  });

  it('fences: once another writer raised the fence, an append with the old hold fails with FencedError and writes nothing; unfenced appends go on', async (t, log) => {
    const old = await log.raiseFence('writer');
    const current = await log.raiseFence('writer');
    for (const requests of [
      { stream: 'f-1', events: events(1) },
      { stream: 'f-1', events: events(3) },
      { stream: 'f-2', events: events(1), claims: [{ name: 'namespace.name', value: 'fenced' }] },
      [{ stream: 'f-3', events: events(1) }, { stream: 'f-4', events: events(1) }],
    ]) {
      const error = await t.throwsAsync(log.append(requests, { fence: old }), { instanceOf: FencedError });
      t.like(error, { fence: 'writer', held: 1, current: 2 });
      t.regex(error!.message, /fence writer: this writer holds epoch 1, and the fence is at 2: another writer has taken over/);
    }
    t.is(await log.headPosition(), 0, 'nothing written');
    // The key was not claimed either: the current writer takes it.
    await log.append({ stream: 'f-5', events: events(1), claims: [{ name: 'namespace.name', value: 'fenced' }] }, { fence: current });
    await log.append({ stream: 'f-6', events: events(1) });
    t.deepEqual((await collect(log.readAll())).map((e) => e.stream), ['f-5', 'f-6']);
  });

  it('fences: an append with a hold of a fence never raised fails with FencedError', async (t, log) => {
    const error = await t.throwsAsync(log.append({ stream: 'f-1', events: events(1) }, { fence: { name: 'nobody', epoch: 1 } }), { instanceOf: FencedError });
    t.like(error, { fence: 'nobody', held: 1, current: undefined });
    t.regex(error!.message, /fence nobody: never raised/);
    t.is(await log.headPosition(), 0);
  });

  it('fences: a refusal of a fenced append is the refusal, not the fence', async (t, log) => {
    const fence = await log.raiseFence('writer');
    await log.append({ stream: 'f-1', events: events(1) }, { fence });
    await t.throwsAsync(log.append({ stream: 'f-1', expectedVersion: 'no_stream', events: events(1) }, { fence }), { instanceOf: WrongExpectedVersionError });
    await t.throwsAsync(log.append({ stream: 'f-1', expectedVersion: 5, events: events(1) }, { fence }), { instanceOf: WrongExpectedVersionError });
    await log.append({ stream: 'f-1', expectedVersion: 0, events: events(1) }, { fence });
    const stale = await log.raiseFence('writer');
    t.is(stale.epoch, 2);
    await t.throwsAsync(log.append({ stream: 'f-1', expectedVersion: 'no_stream', events: events(1) }, { fence }), { instanceOf: WrongExpectedVersionError });
    await t.throwsAsync(log.append({ stream: 'f-1', expectedVersion: 5, events: events(1) }, { fence }), { instanceOf: WrongExpectedVersionError });
    await t.throwsAsync(log.append({ stream: 'f-9', expectedVersion: 'stream_exists', events: events(1) }, { fence }), { instanceOf: WrongExpectedVersionError });
    await t.throwsAsync(log.append({ stream: 'f-1', expectedVersion: 1, events: events(2) }, { fence }), { instanceOf: FencedError });
  });
}
