/**
 * bench/rebuild: rebuild every projection from a conda-store-shaped log (blue/green: shadow tables,
 * keys and indexes after the load, swap), and beside it, in the same run, the raw baseline of
 * reading the log and COPYing the same rows into plain tables. Prints events/s, wall time and peak
 * RSS. Targets: >= 0.5x the baseline, RSS < 300 MB.
 *
 *   npm run bench -- rebuild            1,000,000 events
 *   npm run bench -- rebuild --quick    100,000 events
 */
import { allProjections } from '../projections/index.js';
import { createPostgresEventLog } from '../src/log/postgres/index.js';
import { createLogger } from '../src/logger.js';
import { rebuildGroups } from '../src/projection/rebuild.js';
import { createProjectionService } from '../src/projection/service.js';
import { benchDatabaseUrl, dropDatabase, fmt, fmtInt, formatTable, parseArgs, writeResults } from './lib.js';
import { BATCH, preparedLog, readAndCopyBaseline, settle, tracker, type Run } from './shared/conda-log.js';

const args = parseArgs();
const total = Math.round((args.quick ? 100_000 : 1_000_000) * args.scale);
const url = benchDatabaseUrl('cse_bench_rebuild');
const logger = createLogger('warn');

/** What `rebuild-projections --all` runs: every group at once, the log read once for all. */
async function rebuildAll(): Promise<Run> {
  const log = createPostgresEventLog({ connectionString: url });
  const track = tracker();
  const groups = [...new Set(allProjections.map((p) => p.group))];
  await rebuildGroups({
    databaseUrl: url,
    log,
    logger,
    groups: groups.map((group) => allProjections.filter((p) => p.group === group)),
    batchSize: BATCH,
    onProgress: ({ events, phase }) => {
      if (phase === 'fill') track.mark(events);
    },
  });
  await log.close();
  return track.result();
}

async function main() {
  console.log(`bench/rebuild: ${fmtInt(total)} events (mostly CondaPackageBuildRegistered), batch ${BATCH}`);
  const env = await preparedLog(url, total);
  console.log('projecting it live first (the tables a rebuild replaces)...');
  const log = createPostgresEventLog({ connectionString: url });
  const service = createProjectionService({ databaseUrl: url, log, logger, projections: allProjections, batchSize: BATCH });
  await service.catchUp();
  await service.close();
  await log.close();
  await settle(url, 'the baseline');
  console.log('baseline: read + COPY into plain tables...');
  const raw = await readAndCopyBaseline(url);
  await settle(url, 'the rebuild');
  console.log('rebuild-projections --all...');
  const started = performance.now();
  const rebuilt = await rebuildAll();
  const wall = (performance.now() - started) / 1000;
  // Wall time covers everything: the load, the keys and indexes added after it, and the swap.
  const rate = total / wall;
  const ratio = rate / raw.rate;
  console.log();
  console.log(
    formatTable(
      ['run', 'events', 'wall s', 'ev/s', 'peak RSS MB'],
      [
        ['rebuild-projections --all', fmtInt(total), fmt(wall, 1), fmtInt(rate), fmt(rebuilt.peakRssMb, 0)],
        ['baseline read + COPY', fmtInt(total), fmt(raw.seconds, 1), fmtInt(raw.rate), fmt(raw.peakRssMb, 0)],
      ],
    ),
  );
  console.log(`\nratio to baseline: ${fmt(ratio, 2)}x (target >= 0.5x) ${ratio >= 0.5 ? 'PASS' : 'MISS'}`);
  console.log(`peak RSS: ${fmt(rebuilt.peakRssMb, 0)} MB (target < 300 MB) ${rebuilt.peakRssMb < 300 ? 'PASS' : 'MISS'}`);
  const file = writeResults('rebuild', { date: new Date().toISOString(), total, batch: BATCH, environment: env, rebuild: { ...rebuilt, wall }, baseline: raw, ratio });
  console.log(`results: ${file}`);
  if (!process.env.KEEP_BENCH_DB) await dropDatabase(url);
}

await main();
