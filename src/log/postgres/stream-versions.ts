/**
 * The versions this process has seen its recent streams reach, so that an append that expects a
 * stream at the version it was last seen at can go without looking the version up (append.ts,
 * withKnownVersion). A writer appends most of a stream's events after others it appended itself
 * (a build's BuildStarted after its BuildScheduled). Only one-event appends of nothing but events
 * use it: serve's appends carry keys and preconditions and go through append_events(), which
 * looks each version up under the stream's lock.
 *
 * Why a version seen once may be trusted later: the log is append-only (a trigger refuses UPDATE,
 * DELETE and TRUNCATE, whoever connects) and a stream's versions have no gaps, so a version a
 * stream reached is a version it still has, and a stream seen at `v` is at `v` or beyond. An append
 * that expects `v` and writes `v + 1` without looking is then right when the stream is at `v`; when
 * it has gone beyond (another process appended), version `v + 1` is taken, the unique key raises,
 * and the append falls back to append_events(), which sees the real version and refuses.
 *
 * What would break the rule is a log that goes back in time under a running process: a database
 * restored from a backup, a replica promoted behind the primary, the event_store schema dropped and
 * migrated again. The log forgets every version when a connection is lost and when its pool opens
 * a new one (index.ts), and decides on a known version only once the connection is in hand: a
 * server that went back has closed the old connections, so the statement runs on a new one, after
 * the forgetting. Dropping the schema under running processes is not covered: stop them first.
 */
import { positiveInteger } from '../positive-integer.js';

/** Streams remembered at most (those written least recently are forgotten first). */
export const DEFAULT_KNOWN_STREAMS = 10_000;

export interface StreamVersions {
  /** The version `stream` was last seen at, if remembered. */
  get(stream: string): number | undefined;
  /** `stream` has reached `version` (a lower version than the one remembered changes nothing). */
  reached(stream: string, version: number): void;
  /** Forgets every stream. */
  clear(): void;
  readonly size: number;
}

/**
 * Two generations of half the size each: streams are written to the newer one, which replaces the
 * older when it is full, so that those not written for a generation are forgotten together. A
 * Map used as a queue (deleting its first entry on each write) costs far more: V8 leaves deleted
 * entries in place until the table is rebuilt, and each look for the first entry walks over them
 * (6 µs a write at 10,000 entries, against under 1 µs here).
 */
export function createStreamVersions(max = DEFAULT_KNOWN_STREAMS): StreamVersions {
  const half = Math.ceil(positiveInteger('knownStreams', max) / 2);
  let newer = new Map<string, number>();
  let older = new Map<string, number>();
  return {
    get: (stream) => newer.get(stream) ?? older.get(stream),
    reached(stream, version) {
      const known = newer.get(stream) ?? older.get(stream);
      if (known !== undefined && known >= version) return;
      if (!newer.has(stream) && newer.size >= half) {
        older = newer;
        newer = new Map();
      }
      newer.set(stream, version);
    },
    clear() {
      newer = new Map();
      older = new Map();
    },
    get size() {
      let size = newer.size;
      for (const stream of older.keys()) if (!newer.has(stream)) size++;
      return size;
    },
  };
}
