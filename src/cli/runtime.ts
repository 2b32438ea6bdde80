import { InvalidArgumentError } from 'commander';
import { allProjections } from '../../projections/index.js';
import { loadConfig, type Config } from '../config.js';
import { openEventLog } from '../log/index.js';
import type { EventLog } from '../log/types.js';
import { createLogger, type Logger } from '../logger.js';
import { createProjectionService } from '../projection/service.js';
import { createPool } from '../db/pool.js';
import type pg from 'pg';

export interface Runtime {
  config: Config;
  logger: Logger;
  log: EventLog;
}

/** Exit codes: 0 success, 1 the work was done but some input was refused, 2 failure. */
export const EXIT = { ok: 0, refused: 1, failed: 2 } as const;

/**
 * Runs a command with its configuration, logger and log, closes them afterwards, and turns an
 * error into one line on stderr plus a structured log entry and a non-zero exit code.
 */
export async function runCommand(action: (runtime: Runtime) => Promise<number | void>): Promise<never> {
  let code: number = EXIT.failed;
  let logger: Logger | undefined;
  let log: EventLog | undefined;
  try {
    const config = loadConfig();
    logger = createLogger(config.logLevel);
    const activeLogger = logger;
    log = openEventLog(config, (error) => activeLogger.warn({ err: error }, 'event log background error'));
    code = (await action({ config, logger, log })) ?? EXIT.ok;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    logger?.debug({ err: error }, 'command failed');
    process.stderr.write(`error: ${message}\n`);
    code = EXIT.failed;
  } finally {
    await log?.close().catch(() => undefined);
  }
  process.exit(code);
}

/** Runs `fn` with a pool of one connection to `databaseUrl`, closed afterwards. */
export async function withPool<T>(databaseUrl: string, fn: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = createPool({ connectionString: databaseUrl, max: 1, onError: () => undefined });
  try {
    return await fn(pool);
  } finally {
    await pool.end();
  }
}

/**
 * An AbortSignal that SIGINT or SIGTERM aborts: long commands finish their batch and save; serve
 * then exits 0, while a command that stops short of its work (catch-up, rebuild-projections)
 * says so and exits 2.
 */
export function stopOnSignals(logger: Logger): AbortSignal {
  const stop = new AbortController();
  const onSignal = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    stop.abort();
  };
  process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
  return stop.signal;
}

/** The projection service of the commands: every projection, the configured database and log. */
export function projectionServiceOf(
  { config, log, logger }: Runtime,
  batchSize: number,
  onBatch?: (progress: { group: string; position: number; events: number }) => void,
) {
  return createProjectionService({ databaseUrl: config.databaseUrl, log, logger, projections: allProjections, batchSize, onBatch });
}

/**
 * An option's parser: a positive integer, or an InvalidArgumentError naming the flag (commander
 * reports it as a usage error; any other error would crash).
 */
export function parsePositive(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
  return n;
}
