import type { Readable } from 'node:stream';
import { EventValidationError, idIntroduced, validateEnvelope, type Envelope } from '../catalogue/index.js';
import { appendBatch } from '../decide/append-batch.js';
import type { EventLog } from '../log/types.js';
import { ndjsonLines } from './ndjson.js';

export interface Rejection {
  line: number;
  reason: string;
}

export interface AppendReport {
  appended: number;
  duplicates: number;
  rejected: Rejection[];
}

export interface AppendNdjsonOptions {
  batchSize?: number;
  /** Called after each batch with the lines and bytes read so far. */
  onProgress?: (progress: { lines: number; bytes: number; report: AppendReport }) => void;
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
 * At the end, the id allocator is moved past the ids the events hold (a restore brings its own).
 */
export async function appendNdjson(log: EventLog, input: Readable, options: AppendNdjsonOptions = {}): Promise<AppendReport> {
  const batchSize = options.batchSize ?? 500;
  const report: AppendReport = { appended: 0, duplicates: 0, rejected: [] };
  // The highest id of each allocator kind the appended events hold (see the end).
  const highestIds = new Map<string, number>();
  let batch: Pending[] = [];
  let lines = 0;
  let bytes = 0;

  const flush = async () => {
    if (batch.length === 0) return;
    const outcomes = await appendBatch(log, batch.map((pending) => pending.envelope));
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'appended') report.appended += 1;
      else if (outcome.status === 'duplicate') report.duplicates += 1;
      else report.rejected.push({ line: batch[i]!.line, reason: outcome.reason });
      const introduced = outcome.status === 'rejected' ? undefined : idIntroduced(batch[i]!.envelope);
      if (introduced) highestIds.set(introduced.kind, Math.max(highestIds.get(introduced.kind) ?? 0, introduced.id));
    });
    batch = [];
    options.onProgress?.({ lines, bytes, report });
  };

  for await (const line of ndjsonLines(input)) {
    lines = line.number;
    bytes = line.bytes;
    let envelope: Envelope;
    try {
      envelope = validateEnvelope(JSON.parse(line.text));
    } catch (error) {
      if (error instanceof SyntaxError) report.rejected.push({ line: line.number, reason: `not valid JSON: ${error.message}` });
      else if (error instanceof EventValidationError) report.rejected.push({ line: line.number, reason: error.message });
      else throw error;
      continue;
    }
    batch.push({ line: line.number, envelope });
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  // A restored log brings its own ids: the allocator goes past them, or it would hand them out again.
  for (const [kind, id] of highestIds) await log.reserveIds(kind, id);
  report.rejected.sort((a, b) => a.line - b.line);
  return report;
}
