import type { Readable } from 'node:stream';
import { EventValidationError, validateEnvelope } from '../catalogue/index.js';
import { toAppendRequest } from '../decide/index.js';
import { EventLogError } from '../log/errors.js';
import type { AppendRequest, EventLog } from '../log/types.js';
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
  request: AppendRequest;
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
    try {
      count(await log.append(batch.map((pending) => pending.request)));
    } catch (error) {
      if (!(error instanceof EventLogError)) throw error;
      // One refused line fails the whole atomic batch: replay it line by line to find which.
      for (const pending of batch) {
        try {
          count(await log.append(pending.request));
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
    let request: AppendRequest;
    try {
      request = toAppendRequest(validateEnvelope(JSON.parse(line.text)));
    } catch (error) {
      if (error instanceof SyntaxError) report.rejected.push({ line: line.number, reason: `not valid JSON: ${error.message}` });
      else if (error instanceof EventValidationError || error instanceof EventLogError) report.rejected.push({ line: line.number, reason: error.message });
      else throw error;
      continue;
    }
    batch.push({ line: line.number, request });
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  report.rejected.sort((a, b) => a.line - b.line);
  return report;
}
