import { EventIdConflictError } from './errors.js';
import { canonicalUuid } from './event-id.js';
import type { AppendRequest } from './types.js';

/** The highest stream version: a stream holds at most 2^31 events (versions are int4 in PostgreSQL). */
export const MAX_STREAM_VERSION = 2 ** 31 - 1;

/**
 * The requests of an append as a log takes them, whatever its backend: checked for what no log
 * could honour, and copied. The copy is why: a log builds its results, the versions it remembers
 * and its live subscribers' events after its statement, and an append may wait in a queue; a
 * caller that reused its request object once it had called (another stream, another event pushed)
 * had those built from what it did next, and a remembered version could then leave a gap.
 */
export function takeRequests(requests: AppendRequest | AppendRequest[]): AppendRequest[] {
  const list = Array.isArray(requests) ? requests : [requests];
  checkRepeatedIds(list);
  return list.map((request) => {
    checkExpectedVersion(request);
    if (request.events.length === 0 && carriesConditions(request)) {
      // It would be dropped with nothing checked: the rest of the call written although, say, the
      // version this request expected does not hold.
      throw new RangeError(
        `append to ${request.stream}: a request without events cannot carry an expected version, claims, releases or preconditions (nothing would check them)`,
      );
    }
    return { ...request, events: request.events.map((event) => ({ ...event })) };
  });
}

function carriesConditions(request: AppendRequest): boolean {
  return (request.expectedVersion ?? 'any') !== 'any' || !!request.claims?.length || !!request.releases?.length || !!request.preconditions?.length;
}

function checkExpectedVersion({ stream, expectedVersion }: AppendRequest): void {
  if (expectedVersion === undefined || expectedVersion === 'any' || expectedVersion === 'no_stream' || expectedVersion === 'stream_exists') return;
  if (Number.isInteger(expectedVersion) && expectedVersion >= 0 && expectedVersion <= MAX_STREAM_VERSION) return;
  throw new RangeError(
    `append to ${stream}: expectedVersion must be a version (an integer from 0 to ${MAX_STREAM_VERSION}), no_stream, stream_exists or any (got ${JSON.stringify(expectedVersion) ?? String(expectedVersion)})`,
  );
}

/**
 * One event id twice in one call: which of the two would the log keep? Refused before anything is
 * sent (PostgreSQL's unique key said so only as a bare unique violation). Ids compare as UUIDs do,
 * whatever their spelling (canonicalUuid).
 */
function checkRepeatedIds(requests: readonly AppendRequest[]): void {
  if (requests.length === 1 && requests[0]!.events.length < 2) return;
  const seen = new Set<string>();
  for (const { stream, events } of requests) {
    for (const { id } of events) {
      const key = canonicalUuid(id);
      if (seen.has(key)) throw new EventIdConflictError(`append to ${stream}: event id ${id} appears twice in one append`, id, stream);
      seen.add(key);
    }
  }
}
