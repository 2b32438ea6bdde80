/**
 * bench/catch-up: project a conda-store-shaped log (mostly package builds, as a channel sync
 * produces) from an already-filled log, and compare with the raw baseline measured in the same
 * run: read the same events and COPY the equivalent rows into plain tables (no constraints, no
 * checkpoints). Prints events/s, peak RSS, and the rate over the first and last 100k events, which
 * must not fall as the log grows.
 *
 *   npm run bench -- catch-up            1,000,000 events
 *   npm run bench -- catch-up --quick    100,000 events
 */
import { allProjections } from '../projections/index.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { createLogger } from '../src/logger.js';
import { createProjectionService } from '../src/projection/service.js';
import { benchDatabaseUrl, dropDatabase, fmt, fmtInt, formatTable, parseArgs, writeResults } from './lib.js';
import { BATCH, preparedLog, readAndCopyBaseline, settle, tracker, type Run } from './shared/conda-log.js';

const args = parseArgs();
const total = Math.round((args.quick ? 100_000 : 1_000_000) * args.scale);
const url = benchDatabaseUrl('cse_bench_catchup');

async function catchUp(): Promise<Run> {
  const log = createPostgresEventLog({ connectionString: url });
  const track = tracker();
  const service = createProjectionService({
    databaseUrl: url,
    log,
    logger: createLogger('warn'),
    projections: allProjections,
    batchSize: BATCH,
    onBatch: ({ events }) => track.mark(events),
  });
  await service.catchUp();
  await service.close();
  await log.close();
  return track.result();
}

async function main() {
  console.log(`bench/catch-up: ${fmtInt(total)} events (mostly CondaPackageBuildRegistered), batch ${BATCH}`);
  const env = await preparedLog(url, total);
  await settle(url, 'the baseline');
  console.log('baseline: read + COPY into plain tables...');
  const raw = await readAndCopyBaseline(url);
  await settle(url, 'the catch-up');
  console.log('catch-up of the 16 projection tables...');
  const cse = await catchUp();
  const ratio = cse.rate / raw.rate;
  console.log();
  console.log(
    formatTable(
      ['run', 'events', 'seconds', 'ev/s', 'first 100k ev/s', 'last 100k ev/s', 'peak RSS MB'],
      [
        ['conda-store-events catch-up', fmtInt(total), fmt(cse.seconds, 1), fmtInt(cse.rate), fmtInt(cse.firstRate), fmtInt(cse.lastRate), fmt(cse.peakRssMb, 0)],
        ['baseline read + COPY', fmtInt(total), fmt(raw.seconds, 1), fmtInt(raw.rate), fmtInt(raw.firstRate), fmtInt(raw.lastRate), fmt(raw.peakRssMb, 0)],
      ],
    ),
  );
  console.log(`\nrate per 100k events, in order: ${cse.windowRates.map((r) => fmtInt(r)).join(', ')} (baseline: ${raw.windowRates.map((r) => fmtInt(r)).join(', ')})`);
  console.log(`ratio to baseline: ${fmt(ratio, 2)}x (target >= 0.5x) ${ratio >= 0.5 ? 'PASS' : 'MISS'}`);
  console.log(`rate at the end vs the start: ${fmt(cse.lastRate / cse.firstRate, 2)}x (target: no slowdown as the log grows, passed at >= 0.9x, the spread of the 100k rates) ${cse.lastRate >= cse.firstRate * 0.9 ? 'PASS' : 'MISS'}`);
  const file = writeResults('catch-up', { date: new Date().toISOString(), total, batch: BATCH, environment: env, catchUp: cse, baseline: raw, ratio });
  console.log(`results: ${file}`);
  if (!process.env.KEEP_BENCH_DB) await dropDatabase(url);
}

await main();
