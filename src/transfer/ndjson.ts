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
  /** The line is longer than the most an event can be (MAX_LINE_BYTES): its bytes were not kept. */
  tooLong?: true;
  /** Bytes read so far, for progress. */
  bytes: number;
}

const LF = 0x0a;
const CR = 0x0d;

/**
 * The longest line read, 256 MiB: an event's data is stored as jsonb, which holds at most 255 MB,
 * so a longer line cannot be appended anyway. Beyond it a line's bytes are passed over, not kept:
 * kept, a line of gigabytes (a whole log as one JSON array) was read into memory, then failed as
 * "not valid UTF-8" (a string that long cannot be made) or a RangeError.
 */
export const MAX_LINE_BYTES = 256 * 1024 * 1024;

/**
 * The non-blank lines of an NDJSON stream, numbered from 1 as an editor shows them (LF, CRLF and a
 * lone CR end a line). Each line is decoded on its own, strictly: bytes that are not UTF-8 make a
 * line of their own fault (readline put U+FFFD in their place, and the event went into the
 * append-only log with its text changed for good; NATS ingestion refuses such a body too). A byte
 * order mark opening a line is dropped: an editor put it in front of a file, and files get
 * concatenated.
 */
export async function* ndjsonLines(input: Readable, { maxLineBytes = MAX_LINE_BYTES }: { maxLineBytes?: number } = {}): AsyncGenerator<NumberedLine> {
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
  let number = 0;
  let bytes = 0;
  // The start of a line that the chunks read so far have not ended: pieces, joined once it ends
  // (joined at each chunk, a long line cost time in the square of its length).
  let pending: Buffer[] = [];
  // The pending line ends with a CR that ended its chunk: whether an LF follows (a CRLF) is for
  // the next chunk to say.
  let crPending = false;
  // Bytes of the pending line, and whether it has passed MAX_LINE_BYTES (its bytes then dropped).
  let pendingBytes = 0;
  let overlong = false;
  const keep = (piece: Buffer) => {
    pendingBytes += piece.length;
    if (pendingBytes > maxLineBytes) {
      overlong = true;
      pending = [];
    } else {
      pending.push(piece);
    }
  };
  function* emit(raw: Buffer, ending: number): Generator<NumberedLine> {
    if (overlong || pendingBytes + raw.length > maxLineBytes) {
      number += 1;
      bytes += pendingBytes + raw.length + ending;
      pending = [];
      pendingBytes = 0;
      overlong = false;
      yield { number, text: '', tooLong: true, bytes };
      return;
    }
    const line = pending.length ? Buffer.concat([...pending, raw]) : raw;
    pending = [];
    pendingBytes = 0;
    number += 1;
    bytes += line.length + ending;
    let text: string;
    try {
      text = decoder.decode(line);
    } catch {
      yield { number, text: '', notUtf8: true, bytes };
      return;
    }
    if (text.trim() !== '') yield { number, text, bytes };
  }
  for await (const chunk of input as AsyncIterable<Buffer | string>) {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (data.length === 0) continue;
    let start = 0;
    if (crPending) {
      crPending = false;
      start = data[0] === LF ? 1 : 0;
      yield* emit(Buffer.alloc(0), 1 + start);
    }
    // The next LF and CR at or after `start`, each searched for again only once passed (indexOf,
    // not a loop over the bytes: most files have no CR at all, and it is then searched once).
    let lf = data.indexOf(LF, start);
    let cr = data.indexOf(CR, start);
    while (lf !== -1 || cr !== -1) {
      const end = cr === -1 || (lf !== -1 && lf < cr) ? lf : cr;
      if (end === data.length - 1 && end === cr) {
        keep(Buffer.from(data.subarray(start, end)));
        crPending = true;
        start = data.length;
        break;
      }
      const crlf = end === cr && data[end + 1] === LF;
      yield* emit(data.subarray(start, end), crlf ? 2 : 1);
      start = end + (crlf ? 2 : 1);
      if (lf !== -1 && lf < start) lf = data.indexOf(LF, start);
      if (cr !== -1 && cr < start) cr = data.indexOf(CR, start);
    }
    if (start < data.length) keep(Buffer.from(data.subarray(start)));
  }
  if (crPending || pending.length || overlong) yield* emit(Buffer.alloc(0), crPending ? 1 : 0);
}
