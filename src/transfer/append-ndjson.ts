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
 * Before each batch, the id allocator is moved past the ids its events hold (a restore brings its own).
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
    // A restored log brings its own ids: the allocator goes past them before each batch, so an
    // append that stops anywhere (the server gone, Ctrl-C just after a commit) leaves no id in the
    // log that the allocator hands out. An id of an event then refused is only a gap.
    const highest = new Map<string, number>();
    for (const { envelope } of batch) {
      const introduced = idIntroduced(envelope);
      if (introduced) highest.set(introduced.kind, Math.max(highest.get(introduced.kind) ?? 0, introduced.id));
    }
    for (const [kind, id] of highest) {
      if (id <= (reserved.get(kind) ?? 0)) continue;
      await log.reserveIds(kind, id);
      reserved.set(kind, id);
    }
    const outcomes = await appendBatch(log, batch.map((pending) => pending.envelope));
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'appended') report.appended += 1;
      else if (outcome.status === 'duplicate') report.duplicates += 1;
      else report.rejected.push({ line: batch[i]!.line, reason: outcome.reason });
    });
    batch = [];
    options.onProgress?.({ lines, bytes, report });
  };

  for await (const line of ndjsonLines(input)) {
    lines = line.number;
    bytes = line.bytes;
    if (line.notUtf8) {
      report.rejected.push({ line: line.number, reason: 'not valid UTF-8: is the file in another encoding (Latin-1, Windows-1252)? convert it first, e.g. with iconv -t UTF-8' });
      continue;
    }
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
  report.rejected.sort((a, b) => a.line - b.line);
  return report;
}
