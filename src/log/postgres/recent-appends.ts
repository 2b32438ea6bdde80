/**
 * This process's own recent appends, kept for its own live subscribers: serve appends what it
 * ingests and projects it in the same process, and reading back from PostgreSQL the events it has
 * just written was a round trip, a statement and the rows' parsing for every batch projected.
 *
 * Why handing them over never skips an event: a subscriber at position `next` has had every event
 * below `next` that will ever commit (read-all.sql's bound, or this rule). An entry here is an
 * event whose append has committed, at its position. Taken only as an unbroken run of positions
 * from `next`, the run holds every event of those positions, so nothing below the run's end can
 * still commit: the subscriber moves past it just as after a read of the log. A position that is
 * not here (another process's event, an append still in flight, a position an aborted append
 * left unused) stops the run, and the subscriber reads the log from there as before.
 *
 * What a subscriber gets is what a read of the log would give: data and metadata as their JSON
 * went in, with object keys in jsonb's order (shorter keys first, then bytewise), so that a live
 * projection and a rebuild from the log build the same rows, key order of json columns included;
 * and objects of its own, as a read gives each reader (each take parses the JSON afresh).
 *
 * Events are kept only while this process has a live subscriber (an appender with none pays
 * nothing), and only the latest of them (a number and a memory budget): a subscriber further
 * behind reads the log, and so does one after an event too large to keep.
 */
import type { AppendedEvent, AppendRequest, LogBatch, RecordedEvent } from '../types.js';
import { canonicalUuid } from '../event-id.js';
import type { EventJson } from './append.js';

/** Events kept at most: a few ingestion batches (serve's subscribers are seldom more than one behind). */
export const DEFAULT_RECENT_EVENTS = 5000;
/** Memory their JSON may take at most, at two bytes a character (conda-store's specifications and lockfiles can be large). */
export const DEFAULT_RECENT_BYTES = 32 * 1024 * 1024;

export interface RecentAppendsOptions {
  maxEvents?: number;
  maxBytes?: number;
}

interface Entry {
  position: number;
  id: string;
  type: string;
  stream: string;
  streamVersion: number;
  recordedMs: number;
  dataJson: string;
  metadataJson: string;
  bytes: number;
}

const isAscii = (text: string) => {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0x7f) return false;
  return true;
};

/** jsonb's order of object keys: by length in bytes (UTF-8), then bytewise. */
export function compareJsonbKeys(a: string, b: string): number {
  // ASCII: bytes are UTF-16 code units, and a different length decides at once.
  if (isAscii(a) && isAscii(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length - y.length || Buffer.compare(x, y);
}

/** A parsed JSON value rebuilt with every object's keys in jsonb's order. */
export function inJsonbOrder(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(inJsonbOrder);
  if (value === null || typeof value !== 'object') return value;
  const source = value as Record<string, unknown>;
  const ordered: Record<string, unknown> = {};
  for (const key of Object.keys(source).sort(compareJsonbKeys)) {
    const item = inJsonbOrder(source[key]);
    // A "__proto__" key from JSON is an own property, as JSON.parse makes it, not the prototype.
    if (key === '__proto__') Object.defineProperty(ordered, key, { value: item, enumerable: true, writable: true, configurable: true });
    else ordered[key] = item;
  }
  return ordered;
}

export interface RecentAppends {
  /** A live subscriber starts (`true`) or stops (`false`): events are kept while there is one. */
  subscriber(live: boolean): void;
  /** Events are being kept (there is a live subscriber): an append should make its eventJson. */
  keeping(): boolean;
  /**
   * After an append committed: `appended` are its results, in the order of the requests' events,
   * whose JSON is `json` (eventJson). False when some event it wrote was not kept (its
   * subscribers must then read the log).
   */
  add(appended: readonly AppendedEvent[], requests: readonly AppendRequest[], json: readonly EventJson[]): boolean;
  /**
   * The unbroken run of kept positions from `from`, up to `limit` of them, as a batch (only the
   * events of `types`, if given; `position` is the run's end); undefined when `from` is not kept.
   */
  take(from: number, limit: number, types?: readonly string[]): LogBatch | undefined;
  has(position: number): boolean;
  /**
   * Whether an event at `position` or past it has been kept (it may have been dropped or cleared
   * since): a subscriber whose run of own events stopped short of it has a gap to read from the log.
   */
  keptFrom(position: number): boolean;
  /**
   * Forgets every event kept: the log's connection was lost, or a new one made, and the server
   * may be a backup restored or a replica promoted that never had them.
   */
  clear(): void;
  /** Batches taken so far (a figure for tests and diagnostics). */
  taken(): number;
}

export function createRecentAppends({ maxEvents = DEFAULT_RECENT_EVENTS, maxBytes = DEFAULT_RECENT_BYTES }: RecentAppendsOptions = {}): RecentAppends {
  const entries = new Map<number, Entry>();
  let bytes = 0;
  let subscribers = 0;
  let batches = 0;
  // The highest position ever kept, not lowered by a clear: a subscriber whose run stopped at a
  // gap, its next event's wake-up counted already, must read the log even if a lost connection
  // cleared the events meanwhile (it would wait for its poll), and a read too many costs little.
  let highest = 0;
  const remove = (entry: Entry) => {
    entries.delete(entry.position);
    bytes -= entry.bytes;
  };
  const clear = () => {
    entries.clear();
    bytes = 0;
  };

  const recorded = (entry: Entry): RecordedEvent => ({
    id: entry.id,
    type: entry.type,
    stream: entry.stream,
    streamVersion: entry.streamVersion,
    globalPosition: entry.position,
    recordedAt: new Date(entry.recordedMs),
    data: inJsonbOrder(JSON.parse(entry.dataJson)) as Record<string, unknown>,
    metadata: inJsonbOrder(JSON.parse(entry.metadataJson)) as Record<string, unknown>,
  });

  return {
    subscriber(live) {
      subscribers += live ? 1 : -1;
      if (subscribers === 0) clear();
    },
    keeping: () => subscribers > 0,
    add(appended, requests, json) {
      if (subscribers === 0) return appended.every((result) => result.duplicate);
      let all = true;
      let index = 0;
      for (const request of requests) {
        for (const event of request.events) {
          const result = appended[index];
          const text = json[index++];
          // A duplicate is an event the log had before, at an older position: nothing new.
          if (result?.duplicate) continue;
          // The log stores no metadata as {}.
          const metadataJson = text?.metadata ?? '{}';
          const size = 2 * ((text?.data.length ?? 0) + metadataJson.length);
          // Not kept (its readers read the log): an event larger than the whole budget, or
          // results that do not line up with the request's events (never expected).
          if (!result || !text || result.id !== canonicalUuid(event.id) || size > maxBytes) {
            all = false;
            continue;
          }
          const previous = entries.get(result.globalPosition);
          if (previous) remove(previous);
          // Copies, not the caller's objects: the caller may change what it was returned.
          entries.set(result.globalPosition, {
            position: result.globalPosition,
            id: result.id,
            type: event.type,
            stream: result.stream,
            streamVersion: result.streamVersion,
            recordedMs: result.recordedAt.getTime(),
            dataJson: text.data,
            metadataJson,
            bytes: size,
          });
          bytes += size;
          highest = Math.max(highest, result.globalPosition);
        }
      }
      // Oldest first out (a Map iterates in insertion order; appends come in position order, or
      // nearly: evicting a slightly newer one first only sends its reader to the log).
      for (const entry of entries.values()) {
        if (entries.size <= maxEvents && bytes <= maxBytes) break;
        remove(entry);
      }
      return all;
    },
    take(from, limit, types) {
      if (!entries.has(from)) return undefined;
      const wanted = types ? new Set(types) : undefined;
      const events: RecordedEvent[] = [];
      let position = from;
      for (let next = from; next < from + limit; next++) {
        const entry = entries.get(next);
        if (!entry) break;
        position = next;
        if (!wanted || wanted.has(entry.type)) events.push(recorded(entry));
      }
      batches++;
      return Object.assign(events, { position });
    },
    has: (position) => entries.has(position),
    keptFrom: (position) => highest >= position,
    clear,
    taken: () => batches,
  };
}
