/**
 * Appends a batch of validated envelopes in as few atomic appends as possible, and says what
 * became of each one: appended, already in the log (a duplicate), or rejected with the rule or
 * log refusal that names why. Shared by every path that takes events in bulk (NDJSON append,
 * NATS ingestion), so they accept and refuse exactly the same events.
 *
 * - Order: envelopes go in in the order given, each with its own expectedVersion; a batch may
 *   create a namespace and then an environment in it.
 * - One atomic append per chunk; when the log refuses it (one bad envelope fails the whole
 *   append), the chunk is replayed envelope by envelope to find which ones.
 * - The same event id twice in one call: the chunk is cut before the repeat, so the repeat is
 *   checked against the log (a duplicate when identical, refused when not).
 * - Duplicates: an event already in the log is a duplicate, never a rejection, even when its
 *   rule no longer holds (a BuildStarted delivered again after the build completed).
 * - An event the database refuses for its own content is rejected too: a NUL character in
 *   free-form JSON (class 22), a value too large to index (54), an integrity error (23); so is an
 *   event that makes deciding fail with an error of ours. One such event never blocks the others.
 * - Infrastructure errors (database down, permissions, a missing table) are thrown: nothing is
 *   reported for the batch, and the caller retries it; events appended before the failure are
 *   then duplicates.
 */
import { isDeepStrictEqual } from 'node:util';
import type { Envelope } from '../catalogue/index.js';
import { dataErrorClass } from '../db/sqlstate.js';
import { EventLogError } from '../log/errors.js';
import { isTransient } from '../projection/transient.js';
import type { AppendedEvent, EventLog } from '../log/types.js';
import { decide, isStaleDecision, type Decision } from './index.js';

export type BatchOutcome =
  | { status: 'appended'; event: AppendedEvent }
  | { status: 'duplicate'; event: AppendedEvent }
  | { status: 'rejected'; error: Error; reason: string };

/**
 * Why an error is the event's fault rather than the system's, or undefined when it is the
 * system's. The log's own refusals (EventLogError) are handled apart; transient errors are never
 * the event's fault.
 */
function eventsFault(error: unknown): string | undefined {
  if (!(error instanceof Error) || error instanceof EventLogError || isTransient(error)) return undefined;
  if (typeof (error as { code?: unknown }).code !== 'string') return `could not be appended: ${error.message}`; // ours, on this event
  switch (dataErrorClass(error)) {
    case '22': // a NUL character or a lone surrogate in free-form JSON, which jsonb cannot store
      return `the database cannot store this event: ${error.message}`;
    case '23': // integrity, and program limits such as a stream name too long for its index
    case '54':
      return `the database refused this event: ${error.message}`;
    default:
      return undefined;
  }
}

/** The outcome of an envelope that failed with `error`: rejected when it is the event's fault, else thrown. */
function rejectedOrThrow(error: unknown): BatchOutcome {
  const reason = eventsFault(error);
  if (reason === undefined) throw error;
  return { status: 'rejected', error: error as Error, reason };
}

/** How many times a chunk (or one envelope) is decided again when a stream it read moved meanwhile. */
const STALE_RETRIES = 5;

/** Cuts the envelopes into runs that never hold the same event id twice. */
function chunksWithoutRepeatedIds(envelopes: Envelope[]): Envelope[][] {
  const chunks: Envelope[][] = [];
  let chunk: Envelope[] = [];
  let ids = new Set<string>();
  for (const envelope of envelopes) {
    if (ids.has(envelope.id)) {
      chunks.push(chunk);
      chunk = [];
      ids = new Set();
    }
    chunk.push(envelope);
    ids.add(envelope.id);
  }
  if (chunk.length) chunks.push(chunk);
  return chunks;
}

/**
 * The envelope's event if it is already in the log (same id in its stream, same type and data),
 * as the log reports a duplicate. Only refused envelopes are looked up, so this costs nothing on
 * the normal path.
 */
async function alreadyInLog(log: EventLog, envelope: Envelope): Promise<AppendedEvent | undefined> {
  const events = await log.readStream(envelope.stream);
  const found = events.find((event) => event.id === envelope.id);
  if (!found || found.type !== envelope.type) return undefined;
  // Compare as JSON values (what the log stores), not as JavaScript objects.
  if (!isDeepStrictEqual(found.data, JSON.parse(JSON.stringify(envelope.data)))) return undefined;
  return {
    id: found.id,
    stream: found.stream,
    streamVersion: found.streamVersion,
    globalPosition: found.globalPosition,
    recordedAt: found.recordedAt,
    duplicate: true,
  };
}

/**
 * A rule refused the envelope: it may still be a duplicate (a BuildStarted delivered again after
 * its build completed). The log never refuses an event it already holds, so its own refusals need
 * no such lookup.
 */
async function ruleRefusal(log: EventLog, envelope: Envelope, error: Error): Promise<BatchOutcome> {
  const existing = await alreadyInLog(log, envelope);
  if (existing) return { status: 'duplicate', event: existing };
  return rejected(error);
}

const rejected = (error: Error): BatchOutcome => ({ status: 'rejected', error, reason: error.message });

const outcomeOf = (event: AppendedEvent): BatchOutcome => (event.duplicate ? { status: 'duplicate', event } : { status: 'appended', event });

/** One envelope on its own: decided, appended, decided again if stale. */
async function appendOne(log: EventLog, envelope: Envelope): Promise<BatchOutcome> {
  for (let attempt = 0; ; attempt++) {
    let decision: Decision;
    try {
      [decision] = (await decide(log, [envelope])) as [Decision];
    } catch (error) {
      return rejectedOrThrow(error);
    }
    if (decision.error) return ruleRefusal(log, envelope, decision.error);
    try {
      const [event] = await log.append(decision.request);
      return outcomeOf(event!);
    } catch (error) {
      if (!(error instanceof EventLogError)) return rejectedOrThrow(error);
      if (isStaleDecision(error) && attempt < STALE_RETRIES) continue;
      return rejected(error);
    }
  }
}

/**
 * Decides and appends envelopes one by one (the simple path for producers and tests), each as the
 * bulk path would on its own. Throws the rule or log error of the first envelope refused.
 */
export async function appendEnvelopes(log: EventLog, envelopes: Envelope[]): Promise<AppendedEvent[]> {
  const appended: AppendedEvent[] = [];
  for (const envelope of envelopes) {
    const outcome = await appendOne(log, envelope);
    if (outcome.status === 'rejected') throw outcome.error;
    appended.push(outcome.event);
  }
  return appended;
}

const sameEvent = (a: Envelope, b: Envelope) =>
  a.type === b.type && a.stream === b.stream && isDeepStrictEqual(JSON.parse(JSON.stringify(a.data)), JSON.parse(JSON.stringify(b.data)));

/**
 * Appends envelopes with distinct ids in one atomic append. When the log refuses it, they are
 * replayed one by one, in order. With `repeats`, the call gives up (returns undefined, nothing
 * written) when one of `repeatedIds` is refused by a rule: its repeat must then be decided in
 * its place in the order, which the caller does by cutting the batch there.
 */
async function appendChunk(log: EventLog, chunk: Envelope[], repeatedIds?: Set<string>): Promise<BatchOutcome[] | undefined> {
  for (let attempt = 0; attempt <= STALE_RETRIES; attempt++) {
    let decisions: Decision[];
    try {
      decisions = await decide(log, chunk);
    } catch (error) {
      if (eventsFault(error) === undefined) throw error;
      if (repeatedIds) return undefined;
      break; // deciding failed on some envelope: find which, one by one
    }
    if (repeatedIds && decisions.some((decision, i) => decision.error && repeatedIds.has(chunk[i]!.id))) return undefined;
    const requests = decisions.flatMap((decision) => (decision.request ? [decision.request] : []));
    let appended: AppendedEvent[];
    try {
      appended = await log.append(requests);
    } catch (error) {
      if (!(error instanceof EventLogError) && eventsFault(error) === undefined) throw error;
      if (isStaleDecision(error)) continue;
      if (repeatedIds) return undefined; // replayed one by one, repeats in their places
      break; // one envelope is refused: find which, one by one
    }
    // Every request holds exactly one event: the results come back in request order.
    const outcomes: BatchOutcome[] = [];
    let next = 0;
    for (let i = 0; i < chunk.length; i++) {
      const { error } = decisions[i]!;
      outcomes.push(error ? await ruleRefusal(log, chunk[i]!, error) : outcomeOf(appended[next++]!));
    }
    return outcomes;
  }
  if (repeatedIds) return undefined;
  // Replayed in order, each decided against the log as the envelopes before it left it.
  const outcomes: BatchOutcome[] = [];
  for (const envelope of chunk) outcomes.push(await appendOne(log, envelope));
  return outcomes;
}

/**
 * Appends the envelopes in order; one outcome per envelope, in the same order.
 *
 * The same event id twice in one call (a producer that published an event again under another
 * Nats-Msg-Id, soon after): the repeats are left out of the append. When every first occurrence
 * of a repeated id goes in, a repeat with the same content is a duplicate of it, and one with
 * other content is refused (it is tried after the append: a refusal changes nothing, so its place
 * in the order does not matter). Otherwise the batch is cut before each repeat, so that the
 * repeat is decided after what precedes it, as if it had come alone.
 */
export async function appendBatch(log: EventLog, envelopes: Envelope[]): Promise<BatchOutcome[]> {
  const firstIndex = new Map<string, number>();
  const repeats: number[] = [];
  envelopes.forEach((envelope, i) => {
    if (firstIndex.has(envelope.id)) repeats.push(i);
    else firstIndex.set(envelope.id, i);
  });
  if (repeats.length === 0) return (await appendChunk(log, envelopes))!;

  const firsts = envelopes.filter((_, i) => firstIndex.get(envelopes[i]!.id) === i);
  const repeatedIds = new Set(repeats.map((i) => envelopes[i]!.id));
  const firstOutcomes = await appendChunk(log, firsts, repeatedIds);
  if (!firstOutcomes) {
    const outcomes: BatchOutcome[] = [];
    for (const chunk of chunksWithoutRepeatedIds(envelopes)) outcomes.push(...(await appendChunk(log, chunk))!);
    return outcomes;
  }
  const byFirst = new Map(firsts.map((envelope, k) => [envelope.id, { envelope, outcome: firstOutcomes[k]! }]));
  const outcomes: BatchOutcome[] = [];
  for (const envelope of envelopes) {
    const first = byFirst.get(envelope.id)!;
    if (first.envelope === envelope) outcomes.push(first.outcome);
    else if (first.outcome.status !== 'rejected' && sameEvent(first.envelope, envelope)) outcomes.push({ status: 'duplicate', event: { ...first.outcome.event, duplicate: true } });
    else outcomes.push(await appendOne(log, envelope));
  }
  return outcomes;
}
