import readline from 'node:readline';
import type { Readable } from 'node:stream';
import type { ExpectedVersion } from '../catalogue/index.js';
import type { RecordedEvent } from '../log/types.js';

/** The envelope of a recorded event, with the expectedVersion that puts it back at the same stream version. */
export function toEnvelopeLine(event: RecordedEvent): string {
  const expectedVersion: ExpectedVersion = event.streamVersion === 0 ? 'no_stream' : event.streamVersion - 1;
  return JSON.stringify({
    id: event.id,
    type: event.type,
    stream: event.stream,
    expectedVersion,
    data: event.data,
    metadata: event.metadata,
  });
}

export interface NumberedLine {
  number: number;
  text: string;
  /** Bytes read so far, for progress. */
  bytes: number;
}

/** The non-blank lines of an NDJSON stream, numbered from 1 as an editor shows them. */
export async function* ndjsonLines(input: Readable): AsyncGenerator<NumberedLine> {
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  let number = 0;
  let bytes = 0;
  for await (const line of lines) {
    number += 1;
    bytes += Buffer.byteLength(line) + 1;
    // A byte order mark that an editor put in front of the file is no part of its first line.
    const text = number === 1 && line.startsWith('\uFEFF') ? line.slice(1) : line;
    if (text.trim() !== '') yield { number, text, bytes };
  }
}
