import { InvalidArgumentError } from 'commander';
import { allProjections } from '../../projections/index.js';
import { loadConfig, type Config } from '../config.js';
import { openEventLog } from '../log/index.js';
import type { EventLog } from '../log/types.js';
import { createLogger, type Logger } from '../logger.js';
import { createProjectionService } from '../projection/service.js';
import { createPool } from '../db/pool.js';
import { stopProgress } from './progress.js';
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
    // The line below is what an operator reads; the stack is for LOG_LEVEL=debug (one failure, one line).
    logger?.debug({ err: error }, 'command failed');
    stopProgress('failed');
    process.stderr.write(`error: ${printable(describeError(error))}\n`);
    code = EXIT.failed;
  } finally {
    await log?.close().catch(() => undefined);
  }
  process.exit(code);
}

/**
 * What went wrong, in one line. A connection to a name with several addresses (localhost: ::1 and
 * 127.0.0.1) that all failed is an AggregateError whose own message is empty: its errors say it.
 */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.message) return error.message;
  if (error instanceof AggregateError && error.errors.length) return error.errors.map(describeError).join('; ');
  return (error as { code?: string }).code ?? error.name;
}

/**
 * Text for a terminal: C0 and C1 control characters and DEL as \u escapes. A refused line's reason quotes
 * the line (a JSON parser's message does), and a corrupt file's escape sequences would otherwise
 * clear or recolour the operator's terminal.
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
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
 * says so and exits 2. A second signal, of either kind, stops the process at once (the signal's
 * default action): whatever it was doing is left as a crash leaves it, which every command
 * recovers from. Each listener used to go after its own first signal: a second SIGINT killed,
 * a SIGINT after a SIGTERM was only logged.
 */
export function stopOnSignals(logger: Logger): AbortSignal {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    logger.info({ signal, again: 'a second SIGINT or SIGTERM stops at once' }, 'shutting down');
    stop.abort();
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
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
  // Digits only: Number() also takes 0x2, 1e1 and " 5".
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${flag} must be a positive integer, got "${value}"`);
  if (n > Number.MAX_SAFE_INTEGER) throw new InvalidArgumentError(`${flag} must be at most ${Number.MAX_SAFE_INTEGER}, got "${value}"`);
  return n;
}

/** An option's parser: a non-empty value (`--stream "$STREAM"` with the variable unset meant the whole log). */
export function parseNonEmpty(value: string, flag: string): string {
  if (value === '') throw new InvalidArgumentError(`${flag} must not be empty`);
  return value;
}
