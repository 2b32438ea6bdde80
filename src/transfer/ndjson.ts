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
  /** The line's text; empty when it is not UTF-8. */
  text: string;
  /** The line's bytes are not UTF-8: a file in another encoding (Latin-1, Windows-1252). */
  notUtf8?: true;
  /** Bytes read so far, for progress. */
  bytes: number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * The non-blank lines of an NDJSON stream, numbered from 1 as an editor shows them (LF, CRLF and a
 * lone CR end a line). Each line is decoded on its own, strictly: bytes that are not UTF-8 make a
 * line of their own fault (readline put U+FFFD in their place, and the event went into the
 * append-only log with its text changed for good; NATS ingestion refuses such a body too). A byte
 * order mark opening a line is dropped: an editor put it in front of a file, and files get
 * concatenated.
 */
export async function* ndjsonLines(input: Readable): AsyncGenerator<NumberedLine> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let number = 0;
  let bytes = 0;
  let rest: Buffer | undefined;
  // A CR ended the last line: an LF that comes next (in the next chunk) completes its CRLF.
  let afterCr = false;
  function* emit(raw: Buffer, ending: number): Generator<NumberedLine> {
    number += 1;
    bytes += raw.length + ending;
    let text: string;
    try {
      text = decoder.decode(raw);
    } catch {
      yield { number, text: '', notUtf8: true, bytes };
      return;
    }
    if (text.trim() !== '') yield { number, text, bytes };
  }
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const data: Buffer = rest ? Buffer.concat([rest, Buffer.from(chunk)]) : Buffer.from(chunk);
    rest = undefined;
    let start = 0;
    if (afterCr && data[0] === LF) {
      bytes += 1;
      start = 1;
    }
    afterCr = false;
    for (let i = start; i < data.length; i++) {
      const byte = data[i];
      if (byte !== LF && byte !== CR) continue;
      const crlf = byte === CR && data[i + 1] === LF;
      yield* emit(data.subarray(start, i), crlf ? 2 : 1);
      if (crlf) i += 1;
      else if (byte === CR && i === data.length - 1) afterCr = true;
      start = i + 1;
    }
    if (start < data.length) rest = Buffer.from(data.subarray(start));
  }
  if (rest) yield* emit(rest, 0);
}
