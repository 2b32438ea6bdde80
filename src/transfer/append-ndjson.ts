import type { Readable } from 'node:stream';
import { EventValidationError, idIntroduced, validateEnvelope, type Envelope } from '../catalogue/index.js';
import { appendBatch } from '../decide/append-batch.js';
import type { EventLog } from '../log/types.js';
import { MAX_LINE_BYTES, ndjsonLines, type NumberedLine } from './ndjson.js';

export interface Rejection {
  line: number;
  reason: string;
}

export interface AppendReport {
  appended: number;
  duplicates: number;
  rejected: Rejection[];
  /** Stopped by its signal (SIGINT) before this line: it and the lines after it were not appended. */
  stoppedAtLine?: number;
}

export interface AppendNdjsonOptions {
  batchSize?: number;
  /** Stops the append between two batches (the one in flight finishes, with its ids reserved). */
  signal?: AbortSignal;
  /** Called after each batch with the lines and bytes read so far. */
  onProgress?: (progress: { lines: number; bytes: number; report: AppendReport }) => void;
}

/**
 * An append that failed part-way (the database gone, the input unreadable): what it had done
 * before the batch that failed, which a run from `report.stoppedAtLine` goes on from (what went
 * in then counts as duplicates). The failure is the `cause`.
 */
export class AppendStoppedError extends Error {
  override name = 'AppendStoppedError';
  constructor(readonly report: AppendReport, cause: unknown) {
    super(
      `append stopped at line ${report.stoppedAtLine}: ${cause instanceof Error ? cause.message : String(cause)} ` +
        '(the lines before it were taken; run it again: what went in counts as duplicates)',
      { cause },
    );
  }
}

interface Pending {
  line: number;
  envelope: Envelope;
}

/**
 * Appends an NDJSON file of envelopes: each line validated, turned into an append request with its
 * append-time rules, and appended in batches that honour each line's expectedVersion. A line that
 * is refused (bad JSON, invalid event, wrong version, duplicate key, broken rule) is reported with
 * its number and reason; the others go in (see appendBatch, shared with NATS ingestion: an event
 * already in the log counts as a duplicate). Infrastructure errors (database down) are thrown.
 * After each batch, the id allocator is moved past the ids its events hold (a restore brings its own).
 */
export async function appendNdjson(log: EventLog, input: Readable, options: AppendNdjsonOptions = {}): Promise<AppendReport> {
  const batchSize = options.batchSize ?? 500;
  const report: AppendReport = { appended: 0, duplicates: 0, rejected: [] };
  // The highest id of each allocator kind the appended events hold, as far as the allocator has
  // been moved past it (below).
  const reserved = new Map<string, number>();
  let batch: Pending[] = [];
  let lines = 0;
  let bytes = 0;

  const flush = async () => {
    if (batch.length === 0) return;
    const outcomes = await appendBatch(log, batch.map((pending) => pending.envelope));
    const highest = new Map<string, number>();
    // Counted into the report once the batch is done, ids reserved: a batch whose reservation
    // fails is where a run after the failure starts again (AppendStoppedError).
    const done: AppendReport = { appended: 0, duplicates: 0, rejected: [] };
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'appended') done.appended += 1;
      else if (outcome.status === 'duplicate') done.duplicates += 1;
      else done.rejected.push({ line: batch[i]!.line, reason: outcome.reason });
      // Only the ids the log holds: a refused line's id (2^31 - 1, say) would use up its kind's ids.
      const introduced = outcome.status === 'rejected' ? undefined : idIntroduced(batch[i]!.envelope);
      if (introduced) highest.set(introduced.kind, Math.max(highest.get(introduced.kind) ?? 0, introduced.id));
    });
    // A restored log brings its own ids: the allocator goes past them after each batch, so an
    // append that stops half-way (its input failing, the server gone, SIGINT, which lets the batch
    // in flight finish and comes here first) leaves no id in the log that the allocator hands out.
    for (const [kind, id] of highest) {
      if (id <= (reserved.get(kind) ?? 0)) continue;
      await log.reserveIds(kind, id);
      reserved.set(kind, id);
    }
    report.appended += done.appended;
    report.duplicates += done.duplicates;
    report.rejected.push(...done.rejected);
    batch = [];
    options.onProgress?.({ lines, bytes, report });
  };

  /** One line: refused at once (not UTF-8, not JSON, not a valid event), or into the batch. */
  const take = async (line: NumberedLine) => {
    lines = line.number;
    bytes = line.bytes;
    if (line.tooLong) {
      report.rejected.push({ line: line.number, reason: `longer than ${MAX_LINE_BYTES / 1024 / 1024} MiB, more than an event can hold (jsonb stores at most 255 MB): is the file NDJSON, one envelope a line?` });
      return;
    }
    if (line.notUtf8) {
      report.rejected.push({ line: line.number, reason: 'not valid UTF-8: is the file in another encoding (Latin-1, Windows-1252)? convert it first, e.g. with iconv -t UTF-8' });
      return;
    }
    let envelope: Envelope;
    try {
      envelope = validateEnvelope(JSON.parse(line.text));
    } catch (error) {
      if (error instanceof SyntaxError) report.rejected.push({ line: line.number, reason: `not valid JSON: ${error.message}` });
      else if (error instanceof EventValidationError) report.rejected.push({ line: line.number, reason: error.message });
      else throw error;
      return;
    }
    batch.push({ line: line.number, envelope });
    if (batch.length >= batchSize) await flush();
  };

  // Stopped between batches: the lines read since the last one are not appended, and the report
  // ends before them (its refusals included), so that a run from there goes on. The input is
  // closed at once: a pipe may send nothing more for a long time.
  const stop = () => {
    report.stoppedAtLine = batch[0]?.line ?? lines + 1;
    report.rejected = report.rejected.filter((rejection) => rejection.line < report.stoppedAtLine!);
    batch = [];
  };
  const closeInput = () => input.destroy();
  options.signal?.addEventListener('abort', closeInput, { once: true });
  try {
    try {
      for await (const line of ndjsonLines(input)) {
        if (options.signal?.aborted) break;
        await take(line);
      }
    } catch (error) {
      if (!options.signal?.aborted) throw error; // the input closed by the stop ends the reading
    } finally {
      options.signal?.removeEventListener('abort', closeInput);
    }
    if (options.signal?.aborted) stop();
    else await flush();
  } catch (error) {
    // The report so far goes with the error: thrown bare, the counts and the refused lines of the
    // batches that went in were lost, and the operator could not tell where to start again.
    stop();
    report.rejected.sort((a, b) => a.line - b.line);
    throw new AppendStoppedError(report, error);
  }
  report.rejected.sort((a, b) => a.line - b.line);
  return report;
}
