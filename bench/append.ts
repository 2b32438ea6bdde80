/**
 * Append throughput of the PostgreSQL event log against a plain-INSERT baseline and Emmett, then
 * the cost of global reads (`readAll`) at 100,000 and 1,000,000 events.
 *
 *   npx tsx bench/append.ts [--scale N] [--rounds N] [--quick] [--prefill N] [--blocks]
 *
 * --scale multiplies the number of events of every scenario and the log sizes of the read timings;
 * --rounds sets the measured rounds (default 5); --quick skips the 1,000,000-event read timing;
 * --prefill N loads N events into each store and runs ANALYZE before measuring (default 0: the
 * stores are new, as the bench database is); --blocks measures the sequential scenarios one
 * contender after the other instead of interleaved (see below).
 *
 * Everything runs in a fresh database `cse_bench_append` (dropped at the start and at the end).
 * Contenders, all with the same pg pool size, the same payloads and the same warm-up:
 *  - cse:    createPostgresEventLog().append() (the store: for these one-stream appends, its fast
 *            path, one INSERT of append-stream.sql; no NOTIFY while no other session listens);
 *  - raw:    plain autocommit INSERTs into `raw_events`, sent the way the store sends its own
 *            (leanQuery: text parameters, no Describe), a copy of event_store.events made with
 *            `LIKE ... INCLUDING ALL` (same columns, types, defaults, PK, unique constraints,
 *            check), global_position from a sequence, transaction_id DEFAULT pg_current_xact_id();
 *            no function, no triggers, no keys, no locks. One INSERT per append (a multi-row
 *            INSERT for 100-event appends);
 *  - emmett: @event-driven-io/emmett-postgresql's getPostgreSQLEventStore().appendToStream(),
 *            with its own schema (emt_* tables in public), given a pg.Pool of the same size.
 * Each measured run is preceded by a warm-up of the same shape (not counted) and a CHECKPOINT, so
 * every contender starts from the same state; the order of the contenders rotates from round to
 * round; the reported rates are the medians over the rounds, and the ratios the medians of the
 * rounds' ratios (each round's contenders measured in the same minutes; the ratio of the medians
 * is printed beside it). The sequential scenarios (one append at
 * a time) interleave the contenders append by append, in a random order at each step, each timed
 * on its own: slow drifts of the machine (fsync time) then weigh on all contenders alike. The
 * concurrent scenario runs each contender in a block of its own.
 * The global reads compare ms per batch over the whole log at 100,000 and at 1,000,000 events, read
 * minutes apart, and, at 1,000,000, over the whole log against its first 100,000 events read just
 * before and after it: the machine's speed drifts by a quarter over minutes (server time of the
 * same first batch 0.52 ms at 100,000, 0.91 ms at 1,000,000 in one run), so the second comparison
 * is the one the drift does not enter.
 * After the scenarios: where the time goes (auto_explain of the 1-event statement), and the CPU
 * each contender spends per 1-event append, in PostgreSQL's client backends (from /proc, when the
 * server runs on this machine) and in Node.js: a figure the machine's commit time does not enter,
 * where the ratios above shrink as commits get cheaper.
 */
import fs from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import { getPostgreSQLEventStore, type PostgresEventStore } from '@event-driven-io/emmett-postgresql';
import { leanQuery } from '../src/db/lean-query.js';
import { migrateLatest } from '../src/db/migrate.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { fastPathQuery, fastRows } from '../src/log/postgres/append.js';
import type { EventLog } from '../src/log/types.js';
import {
  type BenchEvent,
  backendTicks,
  benchDatabaseUrl,
  CLOCK_TICKS_PER_SECOND,
  benchPool,
  dropDatabase,
  environment,
  fmt,
  fmtInt,
  formatTable,
  makeEvents,
  mean,
  median,
  now,
  parseArgs,
  percentile,
  recreateDatabase,
  writeResults,
} from './lib.js';

const args = parseArgs();
const POOL_SIZE = 10;
const WRITERS = 8;
const BATCH = 100;
const WARMUP = 200;
const ROUNDS = args.rounds ?? 5;
const scaled = (n: number, multiple = 1) => Math.max(multiple, Math.round((n * args.scale) / multiple) * multiple);

const DB_URL = benchDatabaseUrl('cse_bench_append');

// ---------------------------------------------------------------------------------------------
// Contenders

/** `expected`: 'new' for the first event of a stream, else the 0-based version of its last event. */
type Expected = 'new' | number;

interface Contender {
  key: 'cse' | 'raw' | 'emmett';
  append(stream: string, events: BenchEvent[], expected: Expected): Promise<void>;
}

function cseContender(log: EventLog): Contender {
  return {
    key: 'cse',
    async append(stream, events, expected) {
      await log.append({ stream, expectedVersion: expected === 'new' ? 'no_stream' : expected, events });
    },
  };
}

const RAW_COLUMNS = 6;
const rawStatements = new Map<number, string>();

/** The baseline: one plain INSERT (multi-row for several events), prepared, autocommit. */
async function rawAppend(db: pg.Pool | pg.PoolClient, stream: string, events: BenchEvent[], expected: Expected): Promise<void> {
  let text = rawStatements.get(events.length);
  if (!text) {
    const rows = Array.from({ length: events.length }, (_, r) =>
      `(${Array.from({ length: RAW_COLUMNS }, (_, c) => `$${r * RAW_COLUMNS + c + 1}`).join(', ')})`);
    text = `INSERT INTO raw_events (id, stream, stream_version, type, data, metadata) VALUES ${rows.join(', ')}`;
    rawStatements.set(events.length, text);
  }
  const first = expected === 'new' ? 0 : expected + 1;
  const values: string[] = [];
  events.forEach((event, i) => {
    values.push(event.id, stream, String(first + i), event.type, JSON.stringify(event.data), JSON.stringify(event.metadata));
  });
  // Sent as the store sends its statement (leanQuery: text parameters, no Describe, no result
  // objects): node-postgres' query() costs about 40 µs more per INSERT, which the store's own
  // path does not pay, and the ratio would have measured the driver, not the store's logic.
  const client = 'release' in db ? db : await db.connect();
  let failed: Error | undefined;
  try {
    await leanQuery(client, `raw_insert_${events.length}`, text, values);
  } catch (error) {
    failed = error as Error;
    throw error;
  } finally {
    // A connection whose statement failed is closed, not handed out again.
    if (client !== db) (client as pg.PoolClient).release(failed);
  }
}

function rawContender(pool: pg.Pool): Contender {
  return { key: 'raw', append: (stream, events, expected) => rawAppend(pool, stream, events, expected) };
}

function emmettContender(store: PostgresEventStore): Contender {
  return {
    key: 'emmett',
    async append(stream, events, expected) {
      // Emmett's stream position counts events (0 = no stream); ours is the last event's 0-based version.
      // STREAM_DOES_NOT_EXIST would disable the check (it becomes NULL), 0n really checks "no stream".
      const expectedStreamVersion = expected === 'new' ? 0n : BigInt(expected + 1);
      await store.appendToStream(
        stream,
        events.map((event) => ({ type: event.type, data: event.data, metadata: event.metadata })),
        { expectedStreamVersion },
      );
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Scenarios

interface Scenario {
  key: string;
  label: string;
  /** Minimum ratio to raw. */
  target: number;
  events: number;
  warmupEvents: number;
  /** Runs the scenario over `events` (already computed); `tag` makes the stream names unique. */
  run(contender: Contender, events: BenchEvent[], tag: string): Promise<void>;
  /** For a scenario of one append at a time: its appends, one by one (measured interleaved). */
  sequential?: Sequential;
}

interface Sequential {
  /** How many appends the scenario makes of `events` events. */
  appends(events: number): number;
  /** The i-th append. */
  append(contender: Contender, events: BenchEvent[], tag: string, i: number): Promise<void>;
}

const stream = (tag: string, i: number) => `conda_package-${tag}-${i}`;

/** A scenario of one append at a time, `perAppend` events each. */
function sequentialScenario(
  scenario: Omit<Scenario, 'run' | 'sequential'>,
  perAppend: number,
  append: Sequential['append'],
): Scenario {
  const sequential: Sequential = { appends: (events) => Math.ceil(events / perAppend), append };
  return {
    ...scenario,
    sequential,
    async run(contender, events, tag) {
      for (let i = 0; i < sequential.appends(events.length); i++) await append(contender, events, tag, i);
    },
  };
}

const SCENARIOS: Scenario[] = [
  sequentialScenario(
    { key: 'single_new', label: '1 ev/append, sequential, new streams (no_stream)', target: 0.9, events: scaled(1500), warmupEvents: WARMUP },
    1,
    (contender, events, tag, i) => contender.append(stream(tag, i), [events[i]!], 'new'),
  ),
  sequentialScenario(
    { key: 'single_existing', label: '1 ev/append, sequential, existing streams (expected version)', target: 0.9, events: scaled(1500), warmupEvents: WARMUP },
    1,
    // Appends to the streams that single_new created under the same tag (each has version 0).
    (contender, events, tag, i) => contender.append(stream(tag, i), [events[i]!], 0),
  ),
  {
    key: 'concurrent_8',
    label: `1 ev/append, ${WRITERS} concurrent writers, new streams`,
    target: 0.8,
    events: scaled(6000, WRITERS),
    warmupEvents: WARMUP,
    async run(contender, events, tag) {
      const per = events.length / WRITERS;
      await Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          for (let i = w * per; i < (w + 1) * per; i++) await contender.append(stream(tag, i), [events[i]!], 'new');
        }),
      );
    },
  },
  sequentialScenario(
    { key: 'batch_100', label: `${BATCH} ev/append, sequential, new streams (no_stream)`, target: 0.85, events: scaled(8000, BATCH), warmupEvents: WARMUP },
    BATCH,
    (contender, events, tag, i) => contender.append(stream(tag, i * BATCH), events.slice(i * BATCH, (i + 1) * BATCH), 'new'),
  ),
];

/**
 * Runs a sequential scenario for all contenders at once, their appends interleaved one by one, in
 * a new random order at each step: each contender still makes one append at a time, and all of
 * them meet the disk in the same state. Measured one after the other, a contender's figure moved
 * by up to 47 % from round to round on this machine (its fsync time drifts over seconds), more
 * than the differences to measure. Random, not rotating: an append that comes right after one of
 * Emmett's is about 8 % slower (what Emmett's append leaves to the server), and in a rotation of
 * three contenders one of them follows Emmett twice as often as another. Returns each
 * contender's own time, in ms.
 */
async function runInterleaved(scenario: Scenario & { sequential: Sequential }, order: Contender[], events: Map<Contender, BenchEvent[]>, tag: string) {
  const ms = new Map(order.map((contender) => [contender, 0]));
  const appends = scenario.sequential.appends(scenario.events);
  for (let i = 0; i < appends; i++) {
    for (const contender of shuffled(order)) {
      const start = now();
      await scenario.sequential.append(contender, events.get(contender)!, tag, i);
      ms.set(contender, ms.get(contender)! + now() - start);
    }
  }
  return ms;
}

/** A copy of `items` in a random order (Fisher-Yates). */
function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  round: number;
  scenario: string;
  contender: Contender['key'];
  events: number;
  ms: number;
  evPerSec: number;
}

function log(message: string) {
  process.stdout.write(message + '\n');
}

async function main() {
  const started = now();
  log(`append bench: database ${new URL(DB_URL).pathname.slice(1)}, pool ${POOL_SIZE}, ${ROUNDS} rounds, scale ${args.scale}${args.quick ? ', quick' : ''}`);
  const loadAtStart = os.loadavg();
  log(`load average at start: ${loadAtStart.map((l) => fmt(l, 2)).join(' ')} (${os.cpus().length} CPUs)${loadAtStart[0]! > 1 ? ' -- the machine is busy: expect noisy figures' : ''}`);
  await recreateDatabase(DB_URL);
  await migrateLatest(DB_URL);

  const admin = benchPool(DB_URL, 2);
  await admin.query(`
    CREATE SEQUENCE raw_events_position_seq AS bigint MINVALUE 1;
    CREATE TABLE raw_events (LIKE event_store.events INCLUDING ALL);
    ALTER TABLE raw_events
      ALTER COLUMN global_position SET DEFAULT nextval('raw_events_position_seq'),
      ALTER COLUMN transaction_id SET DEFAULT pg_current_xact_id();
    ALTER SEQUENCE raw_events_position_seq OWNED BY raw_events.global_position;
  `);
  const env = await environment(admin);

  // dumbo (Emmett's driver) replaces pg's global type parsers (int8 -> BigInt, json(b) -> its own
  // JSON.parse with a reviver). Keep pg's own to restore them for the read timings.
  const defaultParsers = ([20, 114, 3802] as const).map((oid) => [oid, pg.types.getTypeParser(oid, 'text')] as const);

  const cseLog = createPostgresEventLog({ connectionString: DB_URL, poolSize: POOL_SIZE });
  const rawPool = benchPool(DB_URL, POOL_SIZE);
  const emmettPool = benchPool(DB_URL, POOL_SIZE);
  const emmett = getPostgreSQLEventStore(DB_URL, { connectionOptions: { pool: emmettPool } });
  await emmett.schema.migrate();

  const contenders: Contender[] = [cseContender(cseLog), rawContender(rawPool), emmettContender(emmett)];
  const results: RunResult[] = [];

  if (args.prefill > 0) {
    // A log that is not new: the same events in each store, then statistics, as autovacuum would have them.
    for (const contender of contenders) {
      const start = now();
      for (let done = 0; done < args.prefill; done += 1000) {
        await contender.append(stream('prefill', done), makeEvents(Math.min(1000, args.prefill - done)), 'new');
      }
      log(`prefilled ${contender.key} with ${fmtInt(args.prefill)} events in ${fmt((now() - start) / 1000, 1)} s`);
    }
    await admin.query('VACUUM ANALYZE');
  }

  // ------------------------------------------------------------------- append scenarios
  for (let round = 1; round <= ROUNDS; round++) {
    const order = contenders.map((_, i) => contenders[(i + round - 1) % contenders.length]!);
    log(`\nround ${round}/${ROUNDS} (order: ${order.map((c) => c.key).join(', ')})`);
    for (const scenario of SCENARIOS) {
      // Warm-ups of the same shape under their own tag; single_existing reuses single_new's streams.
      const tagBase = scenario.key === 'single_existing' ? 'single_new' : scenario.key;
      const record = (contender: Contender, events: number, ms: number) => {
        const evPerSec = (events * 1000) / ms;
        results.push({ round, scenario: scenario.key, contender: contender.key, events, ms, evPerSec });
        log(`  ${scenario.key.padEnd(16)} ${contender.key.padEnd(7)} ${fmtInt(events).padStart(7)} events ${fmt(ms, 0).padStart(7)} ms ${fmtInt(evPerSec).padStart(7)} ev/s`);
      };
      if (scenario.sequential && !args.blocks) {
        for (const contender of order) await scenario.run(contender, makeEvents(scenario.warmupEvents), `w${round}-${tagBase}`);
        const events = new Map(order.map((contender) => [contender, makeEvents(scenario.events)]));
        await admin.query('CHECKPOINT');
        const ms = await runInterleaved({ ...scenario, sequential: scenario.sequential }, order, events, `r${round}-${tagBase}`);
        for (const contender of order) record(contender, scenario.events, ms.get(contender)!);
        continue;
      }
      for (const contender of order) {
        await scenario.run(contender, makeEvents(scenario.warmupEvents), `w${round}-${tagBase}`);
        const events = makeEvents(scenario.events);
        await admin.query('CHECKPOINT');
        const start = now();
        await scenario.run(contender, events, `r${round}-${tagBase}`);
        record(contender, events.length, now() - start);
      }
    }
  }

  // ------------------------------------------------------------------- where the time goes
  const BREAKDOWN_CALLS = 100;
  const { rows: [countRow] } = await admin.query<Record<'cse' | 'raw' | 'emmett', string>>(
    `SELECT (SELECT count(*) FROM event_store.events)::text AS cse, (SELECT count(*) FROM raw_events)::text AS raw,
            (SELECT count(*) FROM emt_messages)::text AS emmett`);
  const counts = { cse: Number(countRow!.cse), raw: Number(countRow!.raw), emmett: Number(countRow!.emmett) };
  // What the store runs for a 1-event append to one stream: the fast path's INSERT, sent as the store sends it (leanQuery).
  const breakdownQuery = (i: number) => fastPathQuery([{ request: { stream: stream('breakdown', i), expectedVersion: 'no_stream', events: makeEvents(1) } }]);
  const cseBreakdown = await serverBreakdown(cseLog.pool, BREAKDOWN_CALLS, breakdownQuery(0).text, (client, i) => fastRows(client, breakdownQuery(i)));
  const rawBreakdown = await serverBreakdown(rawPool, BREAKDOWN_CALLS, rawStatements.get(1)!, (client, i) =>
    rawAppend(client, stream('breakdown', i), makeEvents(1), 'new'));

  // CPU per append, which the machine's commit time does not enter (the ratios above do).
  const cpu = await cpuPerAppend(admin, contenders, CPU_CALLS);

  await emmett.close();
  await emmettPool.end();
  await rawPool.end();
  for (const [oid, parser] of defaultParsers) pg.types.setTypeParser(oid, 'text', parser);

  const rows = SCENARIOS.map((scenario) => {
    const of = (key: Contender['key']) =>
      median(results.filter((r) => r.scenario === scenario.key && r.contender === key).map((r) => r.evPerSec));
    const cse = of('cse'), raw = of('raw'), emm = of('emmett');
    const spread = (key: Contender['key']) => {
      const v = results.filter((r) => r.scenario === scenario.key && r.contender === key).map((r) => r.evPerSec);
      return (Math.max(...v) - Math.min(...v)) / median(v);
    };
    // The store's rate against another contender's in each round, in round order: measured in the
    // same minutes (interleaved append by append, or in adjacent blocks), a pair the machine's
    // drift from round to round does not enter, where the medians of the rates may come from
    // rounds far apart (the rounds spread by 20 to 50 % on this machine).
    const roundRatiosTo = (other: Contender['key']) => Array.from({ length: ROUNDS }, (_, i) => {
      const inRound = (key: Contender['key']) => results.find((r) => r.round === i + 1 && r.scenario === scenario.key && r.contender === key)!.evPerSec;
      return inRound('cse') / inRound(other);
    });
    const roundRatios = roundRatiosTo('raw');
    const ratio = median(roundRatios), ratioEmmett = median(roundRatiosTo('emmett'));
    const pass = ratio >= scenario.target && ratioEmmett > 1;
    return {
      scenario: scenario.key, label: scenario.label, events: scenario.events,
      cse, raw, ratio, ratioOfMedians: cse / raw, target: scenario.target, emmett: emm, ratioEmmett, pass,
      spread: { cse: spread('cse'), raw: spread('raw'), emmett: spread('emmett') },
      roundRatios,
    };
  });

  const appendTable = formatTable(
    ['scenario', 'events', 'conda-store-events ev/s', 'raw INSERT ev/s', 'ratio', 'ratio of the medians', 'target', 'Emmett ev/s', 'ratio vs Emmett', 'result'],
    rows.map((r) => [
      r.label, fmtInt(r.events), fmtInt(r.cse), fmtInt(r.raw), `${fmt(r.ratio, 3)}x`, `${fmt(r.ratioOfMedians, 3)}x`, `>= ${fmt(r.target, 2)}x`,
      fmtInt(r.emmett), `${fmt(r.ratioEmmett, 2)}x`, r.pass ? 'PASS' : 'MISS',
    ]),
  );
  const spreadTable = formatTable(
    ['scenario', 'cse spread', 'raw spread', 'Emmett spread', 'ratio to raw in each round'],
    rows.map((r) => [r.scenario, `${fmt(r.spread.cse * 100, 0)}%`, `${fmt(r.spread.raw * 100, 0)}%`, `${fmt(r.spread.emmett * 100, 0)}%`,
      r.roundRatios.map((ratio) => fmt(ratio, 2)).join(' ')]),
  );
  log(`\nAppend throughput (ev/s: median of ${ROUNDS} rounds; ratios: median of the ${ROUNDS} rounds' ratios, each round's contenders measured in the same minutes;`);
  log(`pool ${POOL_SIZE}; sequential scenarios ${args.blocks ? 'in blocks' : 'interleaved append by append'}; PASS = ratio >= target and ahead of Emmett)\n`);
  log(appendTable);
  log(`\nSpread over the rounds, (max - min) / median, and the ratio to raw round by round:\n`);
  log(spreadTable);

  log(`\nWhere the time goes: 1-event appends on a pooled connection that ran the scenarios (its cached plans),`);
  log(`${BREAKDOWN_CALLS} calls each; rows: event_store.events ${fmtInt(counts.cse)}, raw_events ${fmtInt(counts.raw)}, emt_messages ${fmtInt(counts.emmett)}`);
  log(`latency without the commit (BEGIN; call; ROLLBACK), median: SELECT 1 ${fmt(rawBreakdown.selectOneMs, 3)} ms, ` +
    `raw INSERT ${fmt(rawBreakdown.latencyNoCommitMs, 3)} ms, the store's INSERT ${fmt(cseBreakdown.latencyNoCommitMs, 3)} ms`);
  log(`server time per statement (auto_explain, log_analyze on; a top-level time includes auto_explain's own logging of its nested statements):\n`);
  const breakdownRows = [
    ...rawBreakdown.statements.filter((b) => !b.nested).map((b) => ({ ...b, who: 'raw' })),
    ...cseBreakdown.statements.slice(0, 9).map((b) => ({ ...b, who: 'cse' })),
  ];
  log(formatTable(
    ['contender', 'statement (nested statements indented)', 'calls', 'mean ms', 'max ms'],
    breakdownRows.map((b) => [b.who, (b.nested ? '  ' : '') + b.statement.slice(0, 72), b.calls, fmt(b.meanMs, 3), fmt(b.maxMs, 3)]),
  ));
  if (cpu) {
    log(`\nCPU per append (1-event appends to new streams, ${fmtInt(CPU_CALLS)} per contender in ${CPU_BLOCKS} blocks, alternating, autocommit;`);
    log(`PostgreSQL: user + system time of the database's client backends from /proc; Node.js: process.cpuUsage()):\n`);
    const together = (c: { backendUs: number; nodeUs: number }) => c.backendUs + c.nodeUs;
    const raw = cpu.find((c) => c.key === 'raw')!;
    log(formatTable(
      ['contender', 'PostgreSQL µs/append', 'Node.js µs/append', 'together', 'vs raw'],
      cpu.map((c) => [c.key, fmt(c.backendUs, 0), fmt(c.nodeUs, 0), fmt(together(c), 0), `${fmt(together(c) / together(raw), 2)}x`]),
    ));
  } else {
    log('\nCPU per append: not measured (the database server is not on this machine, or /proc cannot be read)');
  }
  const costliestNested = cseBreakdown.statements.find((b) => b.nested);
  if (costliestNested) log(`\nslowest run of the costliest nested statement:\n${costliestNested.slowestPlan.trimEnd()}`);
  for (const scanning of cseBreakdown.statements.filter((b) => b !== costliestNested && /Seq Scan on events/.test(b.slowestPlan))) {
    log(`\na nested statement whose cached plan scans the whole log (mean ${fmt(scanning.meanMs, 3)} ms):\n${scanning.slowestPlan.trimEnd()}`);
  }

  // ------------------------------------------------------------------- global reads
  // From an empty log again (same database name, recreated), so that the sizes are exact and the
  // log holds only 1000-event appends.
  await cseLog.close();
  await admin.end();
  await recreateDatabase(DB_URL);
  await migrateLatest(DB_URL);
  const readDb = benchPool(DB_URL, 2);
  const readLog = createPostgresEventLog({ connectionString: DB_URL, poolSize: POOL_SIZE });
  const readResults = [];
  const sizes = args.quick ? [100_000] : [100_000, 1_000_000];
  for (const size of sizes) {
    const target = Math.round(size * args.scale);
    const fill = await fillTo(readLog, target);
    if (fill.events > 0) log(`\nfilled the log to ${fmtInt(target)} events: ${fmtInt(fill.events)} events in ${fmt(fill.ms / 1000, 1)} s (${fmtInt((fill.events * 1000) / fill.ms)} ev/s, 1000 ev/append, 2 writers)`);
    await readDb.query('VACUUM ANALYZE event_store.events');
    await readDb.query('CHECKPOINT');
    // At the largest size, the first events of the smallest read again around the whole read.
    const control = size === sizes.at(-1) && sizes.length > 1 ? Math.round(sizes[0]! * args.scale) : undefined;
    const read = await timeReads(readLog, target, control);
    readResults.push({ size: target, fill, ...read });
    log(`  readAll at ${fmtInt(target)}: ${read.batches} batches in ${fmt(read.totalMs, 0)} ms, ${fmt(read.msPerBatch, 2)} ms/batch, ${fmtInt(read.evPerSec)} ev/s; first batch ${fmt(read.firstBatchMs, 2)} ms, last batch ${fmt(read.lastBatchMs, 2)} ms; held back ${read.heldBack}x (${fmt(read.heldBackMs, 0)} ms)`);
  }
  const readTable = formatTable(
    ['log size', 'batches', 'readAll total ms', 'ms/batch (mean)', 'ms/batch (p50)', 'ms/batch (p95)', 'ev/s', 'first batch ms', 'last batch ms', 'last/first',
      'server ms first/last', 'pages first/last', 'held-back waits'],
    readResults.map((r) => [
      fmtInt(r.size), fmtInt(r.batches), fmt(r.totalMs, 0), fmt(r.msPerBatch, 2), fmt(r.p50, 2), fmt(r.p95, 2),
      fmtInt(r.evPerSec), fmt(r.firstBatchMs, 2), fmt(r.lastBatchMs, 2), `${fmt(r.lastBatchMs / r.firstBatchMs, 2)}x`,
      `${fmt(r.firstServer.ms, 2)} / ${fmt(r.lastServer.ms, 2)}`, `${fmtInt(r.firstServer.buffers)} / ${fmtInt(r.lastServer.buffers)}`,
      r.heldBack > 0 ? `${r.heldBack} (${fmt(r.heldBackMs, 0)} ms)` : '0',
    ]),
  );
  log(`\nGlobal reads: readAll({ batchSize: 1000 }) over the whole log (ms/batch over full batches; held-back waits: time spent`);
  log(`waiting behind transactions in flight, not counted in ms/batch); first/last batch = best of ${ONE_BATCH_REPEATS} reads of the first / last 1000 events, alternating;`);
  log(`server ms, pages = EXPLAIN (ANALYZE, BUFFERS) of read-all.sql for those two batches (median of 5): execution time and shared pages touched\n`);
  log(readTable);
  let readVerdict: string | undefined;
  if (readResults.length === 2) {
    const [small, big] = readResults as [(typeof readResults)[0], (typeof readResults)[0]];
    const verdict = (ratio: number) => (ratio <= 1.25 ? 'PASS' : 'MISS');
    const growth = big.msPerBatch / small.msPerBatch;
    const tail = readResults.map((r) => `${fmt(r.lastBatchMs / r.firstBatchMs, 2)}x at ${fmtInt(r.size)}`).join(', ');
    const tailWorst = Math.max(...readResults.map((r) => r.lastBatchMs / r.firstBatchMs));
    const pagesGrowth = big.lastServer.buffers / small.lastServer.buffers;
    const serverGrowth = big.lastServer.ms / small.lastServer.ms;
    const sameWindow = big.msPerBatch / big.controlMsPerBatch!;
    readVerdict = [
      `ms/batch over the whole log, ${fmtInt(small.size)} -> ${fmtInt(big.size)}: ${fmt(small.msPerBatch, 2)} -> ${fmt(big.msPerBatch, 2)} (${fmt(growth, 2)}x): ${verdict(growth)}`,
      `ms/batch over the whole ${fmtInt(big.size)}-event log against its first ${fmtInt(small.size)} events read just before and after it (the same minutes): ` +
        `${fmt(big.controlMsPerBatch!, 2)} -> ${fmt(big.msPerBatch, 2)} (${fmt(sameWindow, 2)}x): ${verdict(sameWindow)}`,
      `last batch / first batch: ${tail}: ${verdict(tailWorst)}`,
      `last batch on the server, ${fmtInt(small.size)} -> ${fmtInt(big.size)}: ${fmt(small.lastServer.ms, 2)} -> ${fmt(big.lastServer.ms, 2)} ms (${fmt(serverGrowth, 2)}x), ` +
        `${fmtInt(small.lastServer.buffers)} -> ${fmtInt(big.lastServer.buffers)} pages (${fmt(pagesGrowth, 2)}x): ${verdict(pagesGrowth)}`,
    ].join('\n');
    log(`\n${readVerdict}`);
  }

  const file = writeResults('append', {
    date: new Date().toISOString(),
    args,
    poolSize: POOL_SIZE,
    rounds: ROUNDS,
    environment: env,
    append: { rows, runs: results, table: appendTable },
    breakdown: { rowCounts: counts, calls: BREAKDOWN_CALLS, cse: cseBreakdown, raw: rawBreakdown },
    cpuPerAppend: cpu ?? null,
    read: { results: readResults, table: readTable, verdict: readVerdict },
    loadAverage: { start: loadAtStart, end: os.loadavg() },
    totalSeconds: (now() - started) / 1000,
  });
  log(`\nload average at end: ${os.loadavg().map((l) => fmt(l, 2)).join(' ')}`);
  log(`results: ${file} (total ${fmt((now() - started) / 1000, 0)} s)`);

  await readLog.close();
  await readDb.end();
  await dropDatabase(DB_URL);
}

// ---------------------------------------------------------------------------------------------
// CPU per append: what each contender costs the machine, whatever its commits cost. Blocks of
// one contender at a time, so that the CPU of every client backend of the database (the others
// idle) is that contender's; three blocks each, alternating.

const CPU_CALLS = 4500;
const CPU_BLOCKS = 3;
async function cpuPerAppend(admin: pg.Pool, contenders: Contender[], calls: number) {
  const totals = new Map(contenders.map((c) => [c.key, { backendTicks: 0, nodeUs: 0 }]));
  for (let block = 0; block < CPU_BLOCKS; block++) {
    for (const contender of contenders) {
      // The payloads are made first: their making is the bench's CPU, not the contender's.
      const events = makeEvents(calls / CPU_BLOCKS);
      const before = await backendTicks(admin);
      if (!before) return undefined;
      const node = process.cpuUsage();
      for (let i = 0; i < events.length; i++) await contender.append(stream(`cpu-${block}-${contender.key}`, i), [events[i]!], 'new');
      const nodeUsed = process.cpuUsage(node);
      const after = await backendTicks(admin);
      if (!after) return undefined;
      const total = totals.get(contender.key)!;
      for (const [pid, t] of after) total.backendTicks += t - (before.get(pid) ?? 0);
      total.nodeUs += nodeUsed.user + nodeUsed.system;
    }
  }
  return contenders.map((c) => {
    const total = totals.get(c.key)!;
    return { key: c.key, backendUs: (total.backendTicks / CLOCK_TICKS_PER_SECOND) * 1e6 / calls, nodeUs: total.nodeUs / calls };
  });
}

// ---------------------------------------------------------------------------------------------
// Where the time goes: auto_explain (log_analyze, log_nested_statements) on a pooled connection
// that has served the scenarios, so with the plans the store's sessions really cached.

const READ_ALL_SQL = fs.readFileSync(new URL('../src/log/postgres/read-all.sql', import.meta.url), 'utf8');

interface StatementCost {
  statement: string;
  /** A statement of the function body, not the client's own. */
  nested: boolean;
  calls: number;
  meanMs: number;
  maxMs: number;
  slowestPlan: string;
}

interface Breakdown {
  /** Client-observed latency of the call inside BEGIN ... ROLLBACK (no commit, no fsync): median ms. */
  latencyNoCommitMs: number;
  /** Same for `SELECT 1`: the round-trip floor. */
  selectOneMs: number;
  statements: StatementCost[];
}

const normalize = (sql: string) => sql.replace(/\s+/g, ' ').trim();

async function serverBreakdown(
  pool: pg.Pool,
  calls: number,
  clientSql: string,
  call: (client: pg.PoolClient, i: number) => Promise<unknown>,
): Promise<Breakdown> {
  const client = await pool.connect();
  const notices: string[] = [];
  const onNotice = (notice: { message?: string }) => notices.push(notice.message ?? '');
  const latency: number[] = [], selectOne: number[] = [];
  try {
    for (let i = 0; i < calls; i++) {
      let t0 = now();
      await client.query('SELECT 1');
      selectOne.push(now() - t0);
      await client.query('BEGIN');
      t0 = now();
      await call(client, i);
      latency.push(now() - t0);
      await client.query('ROLLBACK');
    }
    client.on('notice', onNotice);
    await client.query(`LOAD 'auto_explain'`);
    await client.query(`SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;
                        SET auto_explain.log_analyze = on; SET auto_explain.log_buffers = on; SET client_min_messages = log`);
    for (let i = 0; i < calls; i++) await call(client, calls + i);
  } finally {
    await client.query(`RESET client_min_messages; SET auto_explain.log_min_duration = -1`).catch(() => undefined);
    client.off('notice', onNotice);
    client.release();
  }
  const top = normalize(clientSql);
  const byStatement = new Map<string, { nested: boolean; durations: number[]; slowest: string }>();
  for (const notice of notices) {
    const duration = Number(/^duration: ([\d.]+) ms/.exec(notice)?.[1]);
    // "Query Text: <sql, maybe several lines>" then the plan, whose first line has "(cost=".
    const lines = notice.split('\n');
    const first = lines.findIndex((line) => line.startsWith('Query Text: '));
    const planStart = lines.findIndex((line, i) => i > first && line.includes('(cost='));
    const text = normalize(first < 0 ? '?' : lines.slice(first, planStart < 0 ? undefined : planStart).join('\n').slice('Query Text: '.length));
    if (!Number.isFinite(duration) || /auto_explain|client_min_messages/.test(text)) continue;
    const statement = text.slice(0, 100);
    const entry = byStatement.get(statement) ?? { nested: text !== top, durations: [], slowest: '' };
    if (duration >= Math.max(0, ...entry.durations)) entry.slowest = notice;
    entry.durations.push(duration);
    byStatement.set(statement, entry);
  }
  return {
    latencyNoCommitMs: median(latency),
    selectOneMs: median(selectOne),
    statements: [...byStatement.entries()]
      .map(([statement, { nested, durations, slowest }]) => ({
        statement, nested, calls: durations.length, meanMs: mean(durations), maxMs: Math.max(...durations), slowestPlan: slowest,
      }))
      .sort((a, b) => Number(a.nested) - Number(b.nested) || b.meanMs * b.calls - a.meanMs * a.calls),
  };
}

// ---------------------------------------------------------------------------------------------
// Global reads

const FILL_BATCH = 1000;
const FILL_WRITERS = 2;
const ONE_BATCH_REPEATS = 21;
let fillStreams = 0;

/** Events in the log (positions may have gaps: a rolled-back append leaves one). */
async function countEvents(db: pg.Pool): Promise<number> {
  const { rows } = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM event_store.events');
  return Number(rows[0]!.n);
}

async function fillTo(eventLog: EventLog & { pool: pg.Pool }, target: number): Promise<{ events: number; ms: number }> {
  let remaining = target - (await countEvents(eventLog.pool));
  if (remaining <= 0) return { events: 0, ms: 0 };
  const total = remaining;
  const start = now();
  let lastReport = start;
  await Promise.all(
    Array.from({ length: FILL_WRITERS }, async () => {
      while (remaining > 0) {
        const size = Math.min(FILL_BATCH, remaining);
        remaining -= size;
        await eventLog.append({ stream: `conda_package-fill-${++fillStreams}`, expectedVersion: 'no_stream', events: makeEvents(size) });
        if (now() - lastReport > 15_000) {
          lastReport = now();
          log(`  filling: ${fmtInt(total - remaining)}/${fmtInt(total)}`);
        }
      }
    }),
  );
  return { events: total, ms: now() - start };
}

/**
 * Reads the log from its start in batches of 1000, `limit` events at most (all if undefined), and
 * times each batch. A batch cut short means readAll stopped below a transaction still in flight
 * (any in the cluster: xids are cluster-wide) and waits for it before the next one: such waits are
 * counted apart, not in the batches' times.
 */
async function timeBatches(eventLog: EventLog, limit?: number) {
  const batchMs: number[] = [];
  let heldBackMs = 0, heldBack = 0, events = 0, previousShort = false, batches = 0;
  const start = now();
  let t = start;
  for await (const batch of eventLog.readAll({ batchSize: 1000 })) {
    const ms = now() - t;
    batches++;
    if (previousShort) {
      heldBackMs += ms;
      heldBack++;
    } else if (batch.length === 1000) {
      batchMs.push(ms);
    }
    previousShort = batch.length < 1000;
    events += batch.length;
    t = now();
    if (limit !== undefined && events >= limit) break;
  }
  const totalMs = now() - start;
  heldBackMs += now() - t;
  return { batchMs, heldBackMs, heldBack, events, batches, totalMs };
}

/**
 * `size` events in the log: reads all of them in batches; with `control`, also its first `control`
 * events just before and just after (their mean ms per batch): a baseline of the same minutes,
 * which a machine whose speed drifts between the two log sizes does not move.
 */
async function timeReads(eventLog: EventLog & { pool: pg.Pool }, size: number, control?: number) {
  const count = await countEvents(eventLog.pool);
  if (count !== size) throw new Error(`expected ${size} events in the log, found ${count}`);
  // The position of the 1000th event from the end: reading from there returns the last full batch.
  const { rows } = await eventLog.pool.query<{ p: string }>(
    'SELECT global_position::text AS p FROM event_store.events ORDER BY global_position DESC OFFSET 999 LIMIT 1');
  const lastBatchFrom = Number(rows[0]!.p);
  const before = control ? await timeBatches(eventLog, control) : undefined;
  const { batchMs, heldBackMs, heldBack, events, batches, totalMs } = await timeBatches(eventLog);
  const after = control ? await timeBatches(eventLog, control) : undefined;
  if (events !== size) throw new Error(`readAll returned ${events} events, expected ${size}`);
  const controlMsPerBatch = before && after ? mean([...before.batchMs, ...after.batchMs]) : undefined;

  const oneBatch = async (from: number) => {
    const t0 = now();
    for await (const batch of eventLog.readAll({ from, batchSize: 1000 })) {
      if (batch.length !== 1000) throw new Error(`batch of ${batch.length}`);
      break;
    }
    return now() - t0;
  };
  const first: number[] = [], last: number[] = [];
  for (let i = 0; i < ONE_BATCH_REPEATS; i++) {
    first.push(await oneBatch(1));
    last.push(await oneBatch(lastBatchFrom));
  }
  // The same two batches on the server alone (no transfer, no parsing): time and pages touched.
  // The bound as readBatch() in src/log/postgres/read.ts sets it (event_store.read_bound), on the
  // connection that then runs read-all.sql with its parameters (from, limit).
  const explain = async (from: number) => {
    const client = await eventLog.pool.connect();
    try {
      const runs: { ms: number; buffers: number }[] = [];
      for (let i = 0; i < 5; i++) {
        const { rows: [bound] } = await client.query<{ bound: string }>('SELECT bound FROM event_store.read_bound()');
        await client.query(`SELECT set_config('event_store.read_bound', $1, false)`, [bound!.bound]);
        const { rows: plan } = await client.query<{ 'QUERY PLAN': [{ 'Execution Time': number; Plan: Record<string, number> }] }>(
          `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${READ_ALL_SQL}`, [from, 1000]);
        const top = plan[0]!['QUERY PLAN'][0];
        runs.push({ ms: top['Execution Time'], buffers: (top.Plan['Shared Hit Blocks'] ?? 0) + (top.Plan['Shared Read Blocks'] ?? 0) });
      }
      return { ms: median(runs.map((r) => r.ms)), buffers: median(runs.map((r) => r.buffers)) };
    } catch (error) {
      log(`  (EXPLAIN of read-all.sql failed: ${(error as Error).message})`);
      return { ms: NaN, buffers: NaN };
    } finally {
      client.release();
    }
  };
  const firstServer = await explain(1);
  const lastServer = await explain(lastBatchFrom);
  return {
    batches,
    heldBack,
    heldBackMs,
    totalMs,
    msPerBatch: mean(batchMs),
    controlMsPerBatch,
    p50: percentile(batchMs, 50),
    p95: percentile(batchMs, 95),
    evPerSec: (events * 1000) / totalMs,
    // The best of the reads, not their median: what a batch costs, without the machine's slow
    // spells (an autovacuum of the log just filled, seen to double half of the reads of either
    // batch, in either direction, while the pages read and the server's time stayed flat).
    firstBatchMs: Math.min(...first),
    lastBatchMs: Math.min(...last),
    firstServer,
    lastServer,
  };
}

main().catch(async (error) => {
  console.error(error);
  process.exitCode = 1;
});
