/**
 * What bench/catch-up and bench/rebuild share: a conda-store-shaped log (a channel sync: mostly
 * package builds), a throughput tracker, and the raw baseline (read the log, COPY the same rows
 * into constraint-free tables).
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { condaStoreProjections } from '../../projections/index.js';
import type { Envelope } from '../../src/catalogue/index.js';
import { toAppendRequest } from '../../src/decide/index.js';
import { createPostgresEventLog } from '../../src/log/postgres/index.js';
import { changesFor, type ProjectedEvent } from '../../src/projection/definition.js';
import { migrateLatest } from '../../src/db/migrate.js';
import { benchPool, environment, fmtInt, packageBuildData, recreateDatabase } from '../lib.js';

export const BATCH = 2000;

/** A channel sync: 3 channels, one package per 4 builds, then the builds. */
export function* history(n: number): Generator<Envelope> {
  const envelope = (type: string, stream: string, data: Record<string, unknown>) =>
    ({ id: randomUUID(), type, stream, data, metadata: { producer: 'bench' } }) as Envelope;
  for (let c = 1; c <= 3; c++) yield envelope('CondaChannelRegistered', `conda_channel-${c}`, { channel_id: c, name: `channel-${c}` });
  let emitted = 3;
  let registered = 0;
  for (let k = 1; emitted < n; k++) {
    const data = packageBuildData(k);
    const packageId = data.package_id as number;
    const channelId = 1 + ((packageId - 1) % 3);
    if (packageId > registered) {
      registered = packageId;
      yield envelope('CondaPackageRegistered', `conda_package-${packageId}`, {
        package_id: packageId, channel_id: channelId, name: `pkg-${packageId}`, version: '1.0.0', license: 'BSD-3-Clause', summary: 'bench package',
      });
      emitted++;
      if (emitted >= n) return;
    }
    yield envelope('CondaPackageBuildRegistered', `conda_package-${packageId}`, { ...data, channel_id: channelId });
    emitted++;
  }
}

export async function fillLog(url: string, total: number): Promise<void> {
  const log = createPostgresEventLog({ connectionString: url });
  const started = performance.now();
  let batch: Envelope[] = [];
  let done = 0;
  const flush = async () => {
    await log.append(batch.map(toAppendRequest));
    done += batch.length;
    batch = [];
    if (done % 100_000 < BATCH) process.stderr.write(`  filled ${fmtInt(done)} events (${fmtInt(done / ((performance.now() - started) / 1000))} ev/s)\n`);
  };
  for (const envelope of history(total)) {
    batch.push(envelope);
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length) await flush();
  await log.close();
}

export interface Run {
  seconds: number;
  rate: number;
  firstRate: number;
  lastRate: number;
  /** The rate over each successive 100k events (to tell a trend from a dip). */
  windowRates: number[];
  peakRssMb: number;
}

/** Samples throughput over windows of events so that the first and last 100k can be compared. */
export function tracker() {
  const started = performance.now();
  let peakRss = process.memoryUsage().rss;
  const marks: { events: number; at: number }[] = [{ events: 0, at: started }];
  return {
    mark(events: number) {
      marks.push({ events, at: performance.now() });
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    },
    result(): Run {
      const last = marks[marks.length - 1]!;
      const window = Math.min(100_000, last.events);
      const rateBetween = (fromEvents: number, toEvents: number) => {
        const a = marks.find((m) => m.events >= fromEvents)!;
        const b = marks.find((m) => m.events >= toEvents) ?? last;
        return (b.events - a.events) / ((b.at - a.at) / 1000);
      };
      const seconds = (last.at - started) / 1000;
      const windowRates: number[] = [];
      for (let from = 0; from + window <= last.events && window > 0; from += window) windowRates.push(rateBetween(from, from + window));
      return {
        seconds,
        rate: last.events / seconds,
        firstRate: rateBetween(0, window),
        lastRate: rateBetween(last.events - window, last.events),
        windowRates,
        peakRssMb: peakRss / 2 ** 20,
      };
    },
  };
}

/** COPY text format: tab-separated, \N for NULL, backslash escapes. */
function copyValue(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return text.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}

/**
 * The baseline: read the same events, turn them into the same rows, COPY them into constraint-free
 * copies of the tables. It reads the next batch while it writes one, as the runner does (its
 * read-ahead): serial, it held the baseline to less concurrency than the store on two cores.
 */
export async function readAndCopyBaseline(url: string): Promise<Run> {
  const pool = benchPool(url, 2);
  const tables = ['conda_channel', 'conda_package', 'conda_package_build'];
  for (const table of tables) {
    await pool.query(`DROP TABLE IF EXISTS baseline_${table}; CREATE TABLE baseline_${table} (LIKE ${table})`);
  }
  const log = createPostgresEventLog({ connectionString: url });
  const track = tracker();
  let count = 0;
  const batches = log.readAll({ batchSize: BATCH })[Symbol.asyncIterator]();
  // Marked as handled: a read that fails while a batch is written is thrown by the await below.
  const ahead = () => {
    const read = batches.next();
    read.catch(() => undefined);
    return read;
  };
  let next = ahead();
  for (;;) {
    const { value: batch, done } = await next;
    if (done) break;
    next = ahead();
    const byTable = new Map<string, { columns: string[]; lines: string[] }>();
    for (const event of batch) {
      for (const projection of condaStoreProjections) {
        for (const change of changesFor(projection, event as unknown as ProjectedEvent)) {
          if (change.op !== 'insert') continue;
          let rows = byTable.get(change.table);
          if (!rows) byTable.set(change.table, (rows = { columns: Object.keys(change.row), lines: [] }));
          rows.lines.push(rows.columns.map((column) => copyValue(change.row[column])).join('\t'));
        }
      }
    }
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      for (const [table, { columns, lines }] of byTable) {
        const target = `baseline_${table} (${columns.map((c) => `"${c}"`).join(', ')})`;
        await pipeline(Readable.from([lines.join('\n') + '\n']), client.query(copyFrom(`COPY ${target} FROM STDIN`)));
      }
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    count += batch.length;
    track.mark(count);
  }
  await log.close();
  await pool.end();
  return track.result();
}


/**
 * A settled database for a measured run: the log's table vacuumed and analysed after the fill (or
 * the first reader sets its hint bits and dirties every page, and meets the insert-triggered
 * autovacuum), and nothing left to flush from what ran before.
 */
export async function settle(url: string, what: string): Promise<void> {
  const pool = benchPool(url, 1);
  try {
    await pool.query('VACUUM (ANALYZE) event_store.events');
    // CHECKPOINT needs pg_checkpoint (or a superuser): without it, the run goes on unsettled.
    const checkpointed = await pool.query('CHECKPOINT').then(() => true, (error: Error) => (console.log(`CHECKPOINT not run: ${error.message}`), false));
    console.log(`settled before ${what}: VACUUM (ANALYZE) of the log${checkpointed ? ', CHECKPOINT' : ''}`);
  } finally {
    await pool.end();
  }
}

/** A fresh, migrated bench database holding a filled log; returns the machine facts for the results. */
export async function preparedLog(url: string, total: number): Promise<Record<string, unknown>> {
  await recreateDatabase(url);
  await migrateLatest(url);
  const pool = benchPool(url, 1);
  const facts = await environment(pool);
  await pool.end();
  console.log('filling the log...');
  await fillLog(url, total);
  return facts;
}
