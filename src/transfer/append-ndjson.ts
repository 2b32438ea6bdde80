import type { Readable } from 'node:stream';
import { EventValidationError, validateEnvelope, type Envelope } from '../catalogue/index.js';
import { appendEnvelopes, decide } from '../decide/index.js';
import { EventLogError } from '../log/errors.js';
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
 * its number and reason; the others go in. Infrastructure errors (database down) are thrown.
 */
export async function appendNdjson(log: EventLog, input: Readable, options: AppendNdjsonOptions = {}): Promise<AppendReport> {
  const batchSize = options.batchSize ?? 500;
  const report: AppendReport = { appended: 0, duplicates: 0, rejected: [] };
  let batch: Pending[] = [];
  let lines = 0;
  let bytes = 0;

  const count = (results: { duplicate: boolean }[]) => {
    for (const result of results) {
      if (result.duplicate) report.duplicates += 1;
      else report.appended += 1;
    }
  };

  const flush = async () => {
    if (batch.length === 0) return;
    const decisions = await decide(log, batch.map((pending) => pending.envelope));
    const accepted = batch.filter((pending, i) => {
      const { error } = decisions[i]!;
      if (error) report.rejected.push({ line: pending.line, reason: error.message });
      return !error;
    });
    try {
      count(await log.append(decisions.flatMap((decision) => (decision.request ? [decision.request] : []))));
    } catch (error) {
      if (!(error instanceof EventLogError)) throw error;
      // One refused line fails the whole atomic batch: replay it line by line to find which.
      for (const pending of accepted) {
        try {
          count(await appendEnvelopes(log, [pending.envelope]));
        } catch (lineError) {
          if (!(lineError instanceof EventLogError)) throw lineError;
          report.rejected.push({ line: pending.line, reason: lineError.message });
        }
      }
    }
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
    // The same event id twice in one call is not caught by the log's idempotency check (that looks
    // at events already in the log): the second insert would break the unique id. Flush first, so
    // the repeat is checked against the log: a duplicate if identical, refused if not.
    if (batch.some((pending) => pending.envelope.id === envelope.id)) await flush();
    batch.push({ line: line.number, envelope });
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  report.rejected.sort((a, b) => a.line - b.line);
  return report;
}
