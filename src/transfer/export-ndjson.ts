import type { Writable } from 'node:stream';
import { once } from 'node:events';
import type { EventLog, RecordedEvent } from '../log/types.js';
import { toEnvelopeLine } from './ndjson.js';

export interface ExportOptions {
  from?: number;
  stream?: string;
  batchSize?: number;
  onProgress?: (exported: number, lastPosition: number) => void;
}

async function* eventsToExport(log: EventLog, options: ExportOptions): AsyncGenerator<RecordedEvent[]> {
  if (!options.stream) {
    yield* log.readAll({ from: options.from ?? 1, batchSize: options.batchSize ?? 1000 });
    return;
  }
  const from = options.from ?? 1;
  const pageSize = options.batchSize ?? 1000;
  for (let version = 0; ; version += pageSize) {
    const page = await log.readStream(options.stream, { fromVersion: version, maxCount: pageSize });
    const wanted = page.filter((event) => event.globalPosition >= from);
    if (wanted.length) yield wanted;
    if (page.length < pageSize) return;
  }
}

/** Writes the log (or one stream of it) as NDJSON envelopes that `append` takes back unchanged. */
export async function exportNdjson(log: EventLog, output: Writable, options: ExportOptions = {}): Promise<number> {
  let exported = 0;
  for await (const batch of eventsToExport(log, options)) {
    const chunk = batch.map((event) => `${toEnvelopeLine(event)}\n`).join('');
    if (!output.write(chunk)) await once(output, 'drain');
    exported += batch.length;
    options.onProgress?.(exported, batch[batch.length - 1]!.globalPosition);
  }
  return exported;
}
