/**
 * The projection runner under crashes, as an operator's processes meet them: the real CLI in
 * child processes, killed with SIGKILL between batches and in the middle of one, two `serve`
 * processes competing for the projection group, and SIGTERM during a large catch-up.
 * contract.md, "Projections": the checkpoint is saved in the same transaction as the row changes,
 * so a crash never applies an event twice or skips one; one process owns a group at a time
 * (advisory lock) and another takes over when the owner dies.
 *
 * What the tables should hold is computed by a clean, uninterrupted catch-up of the same log in a
 * database of its own; the tables are compared by a digest of each of the sixteen tables.
 */
import crypto from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import test, { type ExecutionContext } from 'ava';
import pg from 'pg';
import type { Envelope } from '../src/catalogue/index.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { logUpTo } from '../src/log/up-to.js';
import { createLogger } from '../src/logger.js';
import { createProjectionService } from '../src/projection/service.js';
import { allProjections, condaStoreProjections } from '../projections/index.js';
import { runCli, spawnCli, watchChild, type CliResult, type Watched } from './helpers/cli.js';
import { connect, copyOf, dropDatabase, freshDatabase, seededOnce } from './helpers/database.js';
import { appendInBatches, generatedHistory } from './helpers/generated-history.js';
import { envelopeFor } from './helpers/samples.js';
import { condaStoreTableNames } from './schema/conda-store-spec.js';

/** Every wait is bounded: a bug fails the test rather than hanging it. */
const DEADLINE_MS = 60_000;
/** Advisory-lock class of projection-group ownership (src/projection/ownership.ts). */
const OWNERSHIP_LOCK_CLASS = 7403;
const EMPTY_DIGEST = crypto.createHash('md5').update('').digest('hex');

// ---------------------------------------------------------------------------------------------
// Databases

/**
 * The crash tests' log (about 3,600 events), appended once into a database of the file's own;
 * each test works on a copy, which is much faster than appending the log again.
 */
const crashHistory = generatedHistory({ namespaces: 8, environmentsPerNamespace: 4, buildsPerEnvironment: 4, packages: 320, packageBuildsPerPackage: 6 });

/** The name of a database holding crashHistory in its log and nothing in its tables. */
const seededDatabase = seededOnce(test, 'crash_seed_', async (url) => {
  const log = createPostgresEventLog({ connectionString: url });
  try {
    await appendInBatches(log, crashHistory);
  } finally {
    await log.close();
  }
});

// ---------------------------------------------------------------------------------------------
// Tables, checkpoints and the reference

type Digests = Record<string, string>;

/** A digest of every row of each of the sixteen tables. */
async function digests(db: pg.ClientBase): Promise<Digests> {
  const result: Digests = {};
  for (const table of condaStoreTableNames) {
    const { rows } = await db.query<{ digest: string }>(
      `SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) AS digest FROM public."${table}" t`,
    );
    result[table] = rows[0]!.digest;
  }
  return result;
}

interface Checkpoint {
  name: string;
  position: number;
  state: string;
  error: string | null;
}

async function checkpoints(db: pg.ClientBase): Promise<Checkpoint[]> {
  const { rows } = await db.query<Checkpoint>('SELECT name, position::int AS position, state, error FROM event_store.projections ORDER BY name');
  return rows;
}

/** Where the group stands: its lowest checkpoint (0 before the first run). */
async function checkpoint(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ position: number }>('SELECT coalesce(min(position), 0)::int AS position FROM event_store.projections');
  return rows[0]!.position;
}

async function head(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ head: number }>('SELECT coalesce(max(global_position), 0)::int AS head FROM event_store.events');
  return rows[0]!.head;
}

/** Sessions holding the ownership lock of a projection group in this database. */
async function owners(db: pg.ClientBase): Promise<number> {
  const { rows } = await db.query<{ owners: number }>(
    `SELECT count(*)::int AS owners FROM pg_locks
      WHERE locktype = 'advisory' AND classid = $1 AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND objid::bigint = (hashtext('conda-store')::bigint & 4294967295)`,
    [OWNERSHIP_LOCK_CLASS],
  );
  return rows[0]!.owners;
}

/** The group's checkpoint, and whether another session has a transaction with a transaction id open (a batch in flight). */
async function batchState(db: pg.ClientBase): Promise<{ position: number; inFlight: boolean }> {
  const { rows } = await db.query<{ position: number; in_flight: boolean }>(
    `SELECT (SELECT coalesce(min(position), 0)::int FROM event_store.projections) AS position,
            EXISTS (SELECT 1 FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL) AS in_flight`,
  );
  return { position: rows[0]!.position, inFlight: rows[0]!.in_flight };
}

/** A clean, uninterrupted catch-up in this process (up to `last`, or the head), then the digests. */
async function cleanCatchUp(url: string, last?: number): Promise<Digests> {
  const log = createPostgresEventLog({ connectionString: url });
  const service = createProjectionService({
    databaseUrl: url,
    log: last === undefined ? log : logUpTo(log, last),
    logger: createLogger('silent'),
    projections: allProjections,
    batchSize: 500,
  });
  try {
    await service.catchUp();
  } finally {
    await service.close();
    await log.close();
  }
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    if (last !== undefined && (await checkpoint(client)) !== last) throw new Error(`the reference catch-up stopped at ${await checkpoint(client)}, not ${last}`);
    return await digests(client);
  } finally {
    await client.end();
  }
}

/** What the tables hold after a clean catch-up of the seeded database's log (up to `last`, or all of it). */
async function referenceOfSeed(t: ExecutionContext, last?: number): Promise<Digests> {
  const copy = await copyOf(undefined, await seededDatabase(t));
  try {
    return await cleanCatchUp(copy.url, last);
  } finally {
    await dropDatabase(copy.name);
  }
}

let fullReference: Promise<Digests> | undefined;
/** What the tables hold after a clean catch-up of the whole crash log (computed once, meanwhile). */
function crashReference(t: ExecutionContext): Promise<Digests> {
  if (!fullReference) {
    fullReference = referenceOfSeed(t);
    fullReference.catch(() => undefined); // awaited by the tests; not an unhandled rejection meanwhile
  }
  return fullReference;
}

// ---------------------------------------------------------------------------------------------
// Child processes

interface Running extends Watched {
  logged(msg: string): number;
}

/** Starts the CLI (stdout and stderr always drained), killed with SIGKILL when the test ends if still running. */
function start(t: ExecutionContext, url: string, args: string[]): Running {
  const watched = watchChild(t, spawnCli(args, { env: { DATABASE_URL: url, LOG_LEVEL: 'info' } }), `args: ${args.join(' ')}`);
  return {
    ...watched,
    // Ownership lines name their group: count those of conda-store's group (serve also owns
    // namespace_usage's group and the ingester).
    logged: (msg) => watched.lines.filter((line) => line.msg === msg && (line.group === undefined || line.group === 'conda-store')).length,
  };
}

/** Polls `probe` until it returns something other than undefined/false; fails after the deadline. */
async function until<T>(what: string | (() => string), probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = DEADLINE_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`gave up after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await delay(10);
  }
}

/** Waits for a child's exit, within the deadline. */
async function exitOf(running: Running, timeoutMs = DEADLINE_MS) {
  await until(() => `the exit of ${running.output()}`, () => running.hasExited(), timeoutMs);
  return running.exited;
}

const shown = (result: CliResult) => `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;

/** After a full catch-up: every projection running, at the head, without an error. */
function assertAllAtHead(t: ExecutionContext, rows: Checkpoint[], at: number) {
  t.is(rows.length, allProjections.length);
  t.deepEqual(
    rows,
    allProjections
      .map((p) => p.name)
      .sort()
      .map((name) => ({ name, position: at, state: 'running', error: null })),
  );
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL between batches and in the middle of one

test('catch-up killed with SIGKILL between and in the middle of batches, again and again, applies every event exactly once', async (t) => {
  const reference = crashReference(t);
  const db = await copyOf(t, await seededDatabase(t));
  const client = await connect(t, db.url);
  const last = await head(client);
  t.is(last, crashHistory.length);
  t.is(condaStoreTableNames.length, 16);

  // How each run is ended once its checkpoint has moved: at once (between batches, as a rule),
  // after a small random delay (often inside the next batch), or as soon as a batch transaction is
  // seen open (inside a batch). In-batch kills go on until one is confirmed, within a bound.
  const plan = ['at-progress', 'in-batch', 'random-delay', 'in-batch', 'random-delay', 'in-batch'] as const;
  const MAX_RUNS = 10;
  let kills = 0;
  let confirmedMidBatch = 0;
  let ranThrough: string | undefined;
  const positions: number[] = [];
  for (let runs = 0; runs < MAX_RUNS && (runs < plan.length || confirmedMidBatch === 0); runs++) {
    const mode = plan[runs] ?? 'in-batch';
    const before = await checkpoint(client);
    if (before >= last) break;
    // The killed process's session is gone and its ownership lock with it: the next run starts at once.
    await until('the killed process to release the group', async () => (await owners(client)) === 0);

    const run = start(t, db.url, ['catch-up', '--batch-size', '50']);
    const progressed = await until(() => `progress past ${before}\n${run.output()}`, async () => {
      if (run.hasExited()) return 'exited' as const;
      return (await checkpoint(client)) > before ? ('moved' as const) : undefined;
    });
    if (progressed === 'exited') {
      ranThrough = run.output(); // it finished the log: nothing left to interrupt
      break;
    }

    let open: { position: number; inFlight: boolean } | undefined;
    if (mode === 'random-delay') await delay(Math.floor(Math.random() * 40));
    if (mode === 'in-batch') {
      open = await until('a batch transaction', async () => {
        if (run.hasExited()) return { position: -1, inFlight: false };
        const state = await batchState(client);
        return state.inFlight ? state : undefined;
      });
    }
    run.child.kill('SIGKILL');
    const exit = await exitOf(run);
    if (exit.signal !== 'SIGKILL') {
      ranThrough = run.output(); // it finished before the signal landed
      break;
    }
    kills += 1;
    const after = await checkpoint(client);
    positions.push(after);
    // The batch seen open never committed (the checkpoint did not move): the kill landed inside it.
    if (open?.inFlight && after === open.position) confirmedMidBatch += 1;
    t.true(after >= before && after < last, `checkpoint ${after} after a kill (was ${before}, head ${last})`);
  }
  t.log(`${kills} kills, ${confirmedMidBatch} of them certainly inside a batch; checkpoints after each: ${positions.join(', ')} (head ${last})`);

  await until('the killed process to release the group', async () => (await owners(client)) === 0);
  const finish = await runCli(['catch-up'], { env: { DATABASE_URL: db.url } });
  t.is(finish.code, 0, shown(finish));

  // Nothing applied twice (a second insert would have stopped a projection, an update or delete
  // would show in the rows), nothing skipped (rows would be missing): the tables are the clean result.
  assertAllAtHead(t, await checkpoints(client), last);
  const expected = await reference;
  t.false(Object.values(expected).includes(EMPTY_DIGEST), 'every table of the reference has rows');
  t.deepEqual(await digests(client), expected);

  // And the crashes really happened, some of them inside a batch.
  t.true(kills >= 5, `only ${kills} kills: a run went through to the end\n${ranThrough}`);
  t.true(confirmedMidBatch >= 1, 'no kill landed inside a batch');
});

// ---------------------------------------------------------------------------------------------
// 2. Two serve processes: one owner, takeover on SIGKILL, clean SIGTERM

test('two serve processes: one owns the group, the other takes over when it is killed, every event is projected once', async (t) => {
  const history = generatedHistory({ namespaces: 6, environmentsPerNamespace: 3, buildsPerEnvironment: 3, packages: 120, packageBuildsPerPackage: 4, seed: 'takeover' });
  const cuts = [0, 0.3, 0.55, 0.75, 0.85, 1].map((share) => Math.floor(share * history.length));
  const parts = cuts.slice(1).map((end, i) => history.slice(cuts[i], end));

  // The reference: the same log, caught up cleanly in a database of its own (meanwhile).
  const reference = (async () => {
    const other = await freshDatabase(t);
    const otherLog = createPostgresEventLog({ connectionString: other.url });
    try {
      await appendInBatches(otherLog, history);
    } finally {
      await otherLog.close();
    }
    return cleanCatchUp(other.url);
  })();
  reference.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile

  const db = await freshDatabase(t);
  const log = createPostgresEventLog({ connectionString: db.url });
  t.teardown(() => log.close());
  const client = await connect(t, db.url);
  const appendPart = async (part: Envelope[]) => {
    await appendInBatches(log, part);
    return head(client);
  };
  const projected = (position: number) => until(`the projections to reach ${position}`, async () => (await checkpoint(client)) >= position);

  // Both start at once, on a log with a backlog: one owns the group, the other waits.
  const backlog = await appendPart(parts[0]!);
  // Without ingestion: with the default names, it would consume the machine's shared stream.
  const serves = [start(t, db.url, ['serve', '--no-ingest', '--batch-size', '20']), start(t, db.url, ['serve', '--no-ingest', '--batch-size', '20'])];
  const OWNING = 'owning projection group';
  const WAITING = 'another process owns this projection group; waiting to take over';
  await until(() => `one owner and one waiter\n${serves.map((s) => s.output()).join('\n')}`, () =>
    serves.some((s) => s.logged(OWNING) === 1) && serves.some((s) => s.logged(WAITING) === 1),
  );
  const owner = serves.find((s) => s.logged(OWNING) === 1)!;
  const survivor = serves.find((s) => s !== owner)!;
  t.is(survivor.logged(OWNING), 0, 'only one process owns the group');
  t.is(await owners(client), 1);
  await projected(backlog);

  // Events appended while both run: the owner projects them, the other still waits.
  await projected(await appendPart(parts[1]!));
  t.is(owner.logged(OWNING), 1);
  t.is(survivor.logged(OWNING), 0, 'only one process owns the group');
  t.is(await owners(client), 1);

  // The owner is killed while it projects events as they are appended; more events arrive before
  // and after the other takes over.
  const before = await checkpoint(client);
  const appending = appendPart(parts[2]!);
  await until('the owner to project new events', async () => (await checkpoint(client)) > before);
  owner.child.kill('SIGKILL');
  const killed = Date.now();
  t.is((await exitOf(owner)).signal, 'SIGKILL');
  const killedAt = await checkpoint(client);
  await appending;
  await appendPart(parts[3]!);
  await until(() => `the survivor to take over\n${survivor.output()}`, () => survivor.logged(OWNING) === 1);
  t.log(`the owner was killed at checkpoint ${killedAt} of ${await head(client)}; the other took over ${Date.now() - killed} ms later`);
  t.is(await owners(client), 1);
  const final = await appendPart(parts[4]!);
  t.is(final, history.length);
  await projected(final);

  t.is(survivor.logged(OWNING), 1);
  assertAllAtHead(t, await checkpoints(client), final);
  const expected = await reference;
  t.false(Object.values(expected).includes(EMPTY_DIGEST), 'every table of the reference has rows');
  t.deepEqual(await digests(client), expected);

  // SIGTERM: a clean shutdown, exit 0, the group released.
  survivor.child.kill('SIGTERM');
  const exit = await exitOf(survivor, 15_000);
  t.is(exit.code, 0, survivor.output());
  t.is(survivor.logged('stopped'), 1, survivor.output());
  t.is(await owners(client), 0);
});

// ---------------------------------------------------------------------------------------------
// 3. SIGTERM during a large catch-up

test('serve stopped with SIGTERM while catching up a large backlog exits 0 promptly at a consistent checkpoint', async (t) => {
  const reference = crashReference(t);
  const db = await copyOf(t, await seededDatabase(t));
  const client = await connect(t, db.url);
  const last = await head(client);

  // The group under test, whose checkpoint rows may be written after another group's.
  const group = new Set(condaStoreProjections.map((p) => p.name));
  const serve = start(t, db.url, ['serve', '--no-ingest', '--batch-size', '50']);
  await until(() => `progress\n${serve.output()}`, async () => {
    if (serve.hasExited()) throw new Error(`serve exited\n${serve.output()}`);
    return (await checkpoints(client)).filter((row) => group.has(row.name) && row.position > 0).length === group.size;
  });
  const signalled = Date.now();
  serve.child.kill('SIGTERM');
  // Promptly: within 15 s, where the backlog would take minutes.
  const exit = await exitOf(serve, 15_000);
  const tookMs = Date.now() - signalled;
  t.is(exit.code, 0, serve.output());
  t.is(serve.logged('stopped'), 1, serve.output());
  t.is(await owners(client), 0);

  // It stopped in the backlog, every projection of the group at the same checkpoint, and the
  // tables are exactly what a clean catch-up to that checkpoint gives. (Other groups, such as
  // namespace_usage, run on their own and may stand elsewhere.)
  const rows = (await checkpoints(client)).filter((row) => group.has(row.name));
  const stoppedAt = rows[0]!.position;
  t.log(`serve exited ${tookMs} ms after SIGTERM, at checkpoint ${stoppedAt} of ${last}`);
  t.true(stoppedAt > 0 && stoppedAt < last, `stopped at ${stoppedAt} of ${last}`);
  t.true(rows.every((row) => row.position === stoppedAt && row.state === 'running'), JSON.stringify(rows));
  t.deepEqual(await digests(client), await referenceOfSeed(t, stoppedAt));

  // And a catch-up goes on from there to exactly the clean result.
  const finish = await runCli(['catch-up'], { env: { DATABASE_URL: db.url } });
  t.is(finish.code, 0, shown(finish));
  assertAllAtHead(t, await checkpoints(client), last);
  t.deepEqual(await digests(client), await reference);
});

// Regression: each signal's listener went after its own first signal, so a second SIGINT killed
// a process still shutting down, while a SIGINT after a SIGTERM was only logged, and the process
// went on waiting (here, for a lock that a stuck transaction holds).
test('a second signal of either kind stops a process that is still shutting down at once; the batch it was applying is applied once later', async (t) => {
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  const serve = start(t, db.url, ['serve', '--no-ingest']);
  await until(() => `serve to own the group\n${serve.output()}`, () => serve.logged('owning projection group') === 1);
  // The projector's next batch waits for a lock held here.
  const blocker = await connect(t, db.url);
  await blocker.query('BEGIN');
  await blocker.query('LOCK TABLE namespace IN ACCESS EXCLUSIVE MODE');
  const log = createPostgresEventLog({ connectionString: db.url, poolSize: 1 });
  t.teardown(() => log.close());
  await appendInBatches(log, [envelopeFor('NamespaceCreated', { namespace_id: 1, name: 'held' })]);
  await until('the projector to wait for the lock', async () => {
    // This database's only: the template gives every test database's namespace table the same oid.
    const { rows } = await client.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'namespace'::regclass AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    );
    return rows[0]!.n > 0;
  });
  serve.child.kill('SIGTERM');
  await until(() => `serve to start shutting down\n${serve.output()}`, () => serve.logged('shutting down') === 1);
  serve.child.kill('SIGINT');
  const exit = await exitOf(serve);
  t.deepEqual(exit, { code: null, signal: 'SIGINT' }, serve.output());
  t.is(serve.logged('stopped'), 0);
  await blocker.query('ROLLBACK');
  // Stopped as a crash stops it: the batch it was applying is applied by the next run, once.
  const caughtUp = await runCli(['catch-up'], { env: { DATABASE_URL: db.url } });
  t.is(caughtUp.code, 0, shown(caughtUp));
  t.is((await client.query('SELECT count(*)::int AS n FROM namespace')).rows[0].n, 1);
  assertAllAtHead(t, await checkpoints(client), await head(client));
});

// ---------------------------------------------------------------------------------------------
// 4. catch-up reports what it did not do

// Regression: a catch-up stopped while it waited for the groups a serve owns logged "caught up"
// and exited 0, though it had applied nothing.
test('catch-up interrupted while serve owns the projection groups exits 2 and does not claim it caught up', async (t) => {
  const db = await freshDatabase(t);
  const serve = start(t, db.url, ['serve', '--no-ingest']);
  await until(() => `serve to own the group\n${serve.output()}`, () => serve.logged('owning projection group') === 1);
  const catchUp = start(t, db.url, ['catch-up']);
  await until(() => `catch-up to wait for the group\n${catchUp.output()}`, () => catchUp.logged('another process owns a projection group; waiting for all of them to be free') === 1);
  catchUp.child.kill('SIGINT');
  const exit = await exitOf(catchUp);
  t.is(exit.code, 2, catchUp.output());
  t.regex(catchUp.output(), /error: catch-up interrupted: the projections keep what was applied/);
  t.is(catchUp.logged('caught up'), 0);
});

// Regression: a catch-up after which a projection stood stopped on an error said "caught up" and
// exited 0; a batch job (or an operator's script) took it for done.
test('catch-up that leaves a projection stopped on an error exits 2 and names it, the event and the error', async (t) => {
  const db = await freshDatabase(t);
  const client = await connect(t, db.url);
  // A failed checkpoint that is not this release's (a rebuild's shadow, a retired projection)
  // does not count.
  await client.query(`INSERT INTO event_store.projections (name, state, error) VALUES ('rebuild:retired', 'failed', 'old news')`);
  const clean = await runCli(['catch-up'], { env: { DATABASE_URL: db.url } });
  t.is(clean.code, 0, shown(clean));
  // A table that refuses what the log accepted: the namespaces projection stops on the event.
  await client.query(`ALTER TABLE namespace ADD CONSTRAINT refuse_x CHECK (name <> 'x') NOT VALID`);
  const log = createPostgresEventLog({ connectionString: db.url });
  try {
    await log.append({ stream: 'namespace-1', expectedVersion: 'no_stream', events: [{ id: crypto.randomUUID(), type: 'NamespaceCreated', data: { namespace_id: 1, name: 'x' } }] });
  } finally {
    await log.close();
  }
  const result = await runCli(['catch-up'], { env: { DATABASE_URL: db.url } });
  t.is(result.code, 2, shown(result));
  t.regex(result.stderr, /error: projection namespaces stopped at position 1, event [0-9a-f-]{36} \(NamespaceCreated\): .*refuse_x/);
  t.notRegex(result.stderr, /"msg":"caught up"/);
});
