/**
 * Appends a batch of validated envelopes in as few atomic appends as possible, and says what
 * became of each one: appended, already in the log (a duplicate), or rejected with the rule or
 * log refusal that names why. Shared by every path that takes events in bulk (NDJSON append,
 * NATS ingestion), so they accept and refuse exactly the same events.
 *
 * - Order: envelopes go in in the order given, each with its own expectedVersion; a batch may
 *   create a namespace and then an environment in it.
 * - One atomic append per run of envelopes up to the first one a rule refuses; when the log
 *   refuses an append (one bad envelope fails the whole append), the rest is replayed envelope by
 *   envelope to find which ones. Either way each refusal is decided against the log holding
 *   exactly the envelopes before it, and can be recorded (`keep`) before anything after it goes in.
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
import { EventLogClosedError, EventLogError, FencedError } from '../log/errors.js';
import { isTransient } from '../projection/transient.js';
import type { AppendedEvent, AppendOptions, AppendRequest, EventLog } from '../log/types.js';
import { decide, isStaleDecision, type Decision } from './index.js';

export type BatchOutcome =
  | { status: 'appended'; event: AppendedEvent }
  | { status: 'duplicate'; event: AppendedEvent }
  | { status: 'rejected'; error: Error; reason: string };

/**
 * Errors without a code that say nothing about the event: the log closed under the batch, the
 * driver's pool ended, a query's read timeout, a protocol the driver did not expect. Taken for
 * the event's fault, they stored a batch of valid messages as rejections (acked, gone from the
 * stream) when a program that embeds the ingester closed its log before ingestion had stopped.
 */
function isSystemFailure(error: Error): boolean {
  // FencedError: another writer has taken the job over, and decides these events itself.
  return error instanceof EventLogClosedError || error instanceof FencedError || /Cannot use a pool after calling end on the pool|Query read timeout|Received unexpected .* message from backend/i.test(error.message);
}

/**
 * Why an error is the event's fault rather than the system's, or undefined when it is the
 * system's. The log's own refusals (EventLogError) are handled apart; transient errors are never
 * the event's fault.
 */
function eventsFault(error: unknown): string | undefined {
  if (!(error instanceof Error) || error instanceof EventLogError || isTransient(error) || isSystemFailure(error)) return undefined;
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
function rejectedOrThrow(envelope: Envelope, error: unknown): BatchOutcome {
  const reason = eventsFault(error);
  if (reason === undefined) throw error;
  return { status: 'rejected', error: error as Error, reason: naming(envelope, reason) };
}

/**
 * A refusal's reason naming its event, as every reader of it gets it (`append`'s rejected lines,
 * `rejected_messages`): the log's refusals (a duplicate key, a precondition) and the database's
 * name neither. Rule violations do already ("BuildStarted on build-1: ...").
 */
function naming({ type, stream }: Envelope, reason: string): string {
  if (reason.startsWith(`${type} on `)) return reason;
  // A stream named after free text (a setting's prefix) may run to kilobytes: its start says which.
  const shown = stream.length > 120 ? `${stream.slice(0, 100)}... (${stream.length} characters)` : stream;
  return `${type} on ${shown}: ${reason}`;
}

/** How many times a chunk (or one envelope) is decided again when a stream it read moved meanwhile. */
const STALE_RETRIES = 5;

/** Cuts the items into runs that never hold the same event id twice. */
function chunksWithoutRepeatedIds(items: Item[]): Item[][] {
  const chunks: Item[][] = [];
  let chunk: Item[] = [];
  let ids = new Set<string>();
  for (const item of items) {
    if (ids.has(item.envelope.id)) {
      chunks.push(chunk);
      chunk = [];
      ids = new Set();
    }
    chunk.push(item);
    ids.add(item.envelope.id);
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
  return rejected(envelope, error);
}

const rejected = (envelope: Envelope, error: Error): BatchOutcome => ({ status: 'rejected', error, reason: naming(envelope, error.message) });

const outcomeOf = (event: AppendedEvent): BatchOutcome => (event.duplicate ? { status: 'duplicate', event } : { status: 'appended', event });

/**
 * One envelope on its own: decided, appended, decided again if stale. `before`: awaited right
 * before it is appended; `appendOptions`: the log's, for its append.
 */
async function appendOne(log: EventLog, envelope: Envelope, before?: () => Promise<void>, appendOptions?: AppendOptions): Promise<BatchOutcome> {
  for (let attempt = 0; ; attempt++) {
    let decision: Decision;
    try {
      [decision] = (await decide(log, [envelope])) as [Decision];
    } catch (error) {
      return rejectedOrThrow(envelope, error);
    }
    if (decision.error) return ruleRefusal(log, envelope, decision.error);
    // Outside the try: a failure to keep earlier rejections fails the batch, never this envelope.
    await before?.();
    try {
      const [event] = await log.append(decision.request, appendOptions);
      return outcomeOf(event!);
    } catch (error) {
      if (!(error instanceof EventLogError)) return rejectedOrThrow(envelope, error);
      if (isStaleDecision(error) && attempt < STALE_RETRIES) continue;
      return rejected(envelope, error);
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

/** A rejection as `keep` receives it: the index of its envelope in the batch, and why. */
export interface KeptRejection {
  index: number;
  outcome: Extract<BatchOutcome, { status: 'rejected' }>;
}

export interface AppendBatchOptions {
  /**
   * Records rejections before anything behind them goes in: called with those decided so far,
   * in batch order, before the append of any envelope after them; the batch goes on once it
   * resolves, and a throw fails the batch with nothing more appended. Rejections with nothing
   * appended after them are left to the caller (they are in the outcomes, as all are).
   */
  keep?: (rejections: KeptRejection[]) => Promise<void>;
  /** Every append of the batch made with this hold of a fence (EventLog.append): once it is stale, the batch fails with FencedError. */
  fence?: AppendOptions['fence'];
}

/** An envelope and its place in the batch. */
interface Item {
  envelope: Envelope;
  index: number;
}

/** A batch in progress: its outcomes by index, and the rejections not yet handed to `keep`. */
function batchState(log: EventLog, options: AppendBatchOptions) {
  const outcomes: BatchOutcome[] = [];
  let unkept: KeptRejection[] = [];
  return {
    log,
    appendOptions: options.fence ? { fence: options.fence } : undefined,
    outcomes,
    record(item: Item, outcome: BatchOutcome): void {
      outcomes[item.index] = outcome;
      if (outcome.status === 'rejected') unkept.push({ index: item.index, outcome });
    },
    /** Awaited before every append: the rejections decided so far are kept first. */
    async beforeAppend(): Promise<void> {
      if (unkept.length === 0 || !options.keep) return;
      const rejections = unkept;
      await options.keep(rejections);
      unkept = unkept.filter((rejection) => !rejections.includes(rejection));
    },
  };
}
type BatchState = ReturnType<typeof batchState>;

/** The first of `decisions` refused by a rule (not a duplicate), and the duplicates before it. */
async function nextRefusal(log: EventLog, items: Item[], decisions: Decision[]) {
  const duplicates = new Map<number, BatchOutcome>();
  for (let k = 0; k < items.length; k++) {
    const { error } = decisions[k]!;
    if (!error) continue;
    const outcome = await ruleRefusal(log, items[k]!.envelope, error);
    if (outcome.status === 'rejected') return { cut: k, refusal: outcome, duplicates };
    duplicates.set(k, outcome);
  }
  return { cut: items.length, refusal: undefined, duplicates };
}

/**
 * A request whose `version` preconditions (decide: the version a build stream was read at) count
 * the events appended to those streams since the read, by the runs before it in this batch.
 */
function afterEarlierRuns(request: AppendRequest, moved: ReadonlyMap<string, number>): AppendRequest {
  if (moved.size === 0 || !request.preconditions?.some((p) => p.kind === 'version' && moved.has(p.stream))) return request;
  return {
    ...request,
    preconditions: request.preconditions.map((p) => (p.kind === 'version' && moved.has(p.stream) ? { ...p, version: p.version + moved.get(p.stream)! } : p)),
  };
}

/**
 * Appends a run's requests once the rejections before them are kept: the events appended, or why
 * none were: 'stale' (a stream a rule read moved meanwhile), 'refused' (the log refused one).
 */
async function appendRequests(state: BatchState, requests: AppendRequest[]): Promise<AppendedEvent[] | 'stale' | 'refused'> {
  if (requests.length === 0) return [];
  await state.beforeAppend();
  try {
    return await state.log.append(requests, state.appendOptions);
  } catch (error) {
    if (!(error instanceof EventLogError) && eventsFault(error) === undefined) throw error;
    return isStaleDecision(error) ? 'stale' : 'refused';
  }
}

/** Records a run's outcomes: each a duplicate a rule's lookup found, or the next event appended (one per request, in order). */
function recordRun(state: BatchState, items: Item[], duplicates: ReadonlyMap<number, BatchOutcome>, appended: AppendedEvent[]): void {
  let next = 0;
  items.forEach((item, k) => state.record(item, duplicates.get(k) ?? outcomeOf(appended[next++]!)));
}

/** Items one by one, each decided against the log as the envelopes before it left it. */
async function appendOneByOne(state: BatchState, items: Item[]): Promise<void> {
  for (const item of items) state.record(item, await appendOne(state.log, item.envelope, state.beforeAppend, state.appendOptions));
}

/**
 * Appends items with distinct ids, in order: decided together, then appended in one atomic
 * append per run of envelopes up to each one a rule refuses. The refusal is recorded once the run
 * before it is in: decided against the log plus the envelopes before it (decide never applies a
 * refused envelope to the state it goes on with), it holds then, and is kept (beforeAppend)
 * before the next run goes in. The decisions after a refusal stand too, their version
 * preconditions moved on by what the runs before them appended. Decided again only when a stream
 * read moved meanwhile (another writer); when the log refuses a run, the rest goes one by one.
 */
async function appendRun(state: BatchState, items: Item[]): Promise<void> {
  const { log } = state;
  let rest = items;
  for (let attempt = 0; rest.length > 0; attempt++) {
    let decisions: Decision[];
    try {
      decisions = await decide(log, rest.map((item) => item.envelope));
    } catch (error) {
      if (eventsFault(error) === undefined) throw error;
      return appendOneByOne(state, rest); // deciding failed on one of them: find which
    }
    const moved = new Map<string, number>();
    let stale = false;
    while (rest.length > 0 && !stale) {
      const { cut, refusal, duplicates } = await nextRefusal(log, rest, decisions);
      const appended = await appendRequests(state, decisions.slice(0, cut).flatMap((decision) => (decision.request ? [afterEarlierRuns(decision.request, moved)] : [])));
      if (appended === 'stale' && attempt < STALE_RETRIES) {
        stale = true; // decided again, from this run on
        continue;
      }
      if (!Array.isArray(appended)) return appendOneByOne(state, rest); // one envelope is refused: find which
      recordRun(state, rest.slice(0, cut), duplicates, appended);
      for (const event of appended) if (!event.duplicate) moved.set(event.stream, (moved.get(event.stream) ?? 0) + 1);
      if (refusal) state.record(rest[cut]!, refusal);
      const settled = refusal ? cut + 1 : cut;
      rest = rest.slice(settled);
      decisions = decisions.slice(settled);
    }
  }
}

/**
 * The first occurrences of a batch with repeated ids, in one atomic append, or nothing at all
 * (false) when any of them is refused, by a rule or by the log: the batch is then cut at its
 * repeats instead (see appendBatch).
 */
async function appendWhole(state: BatchState, items: Item[]): Promise<boolean> {
  const { log } = state;
  for (let attempt = 0; attempt <= STALE_RETRIES; attempt++) {
    let decisions: Decision[];
    try {
      decisions = await decide(log, items.map((item) => item.envelope));
    } catch (error) {
      if (eventsFault(error) === undefined) throw error;
      return false;
    }
    const { cut, duplicates } = await nextRefusal(log, items, decisions);
    if (cut < items.length) return false;
    const appended = await appendRequests(state, decisions.flatMap((decision) => (decision.request ? [decision.request] : [])));
    if (appended === 'stale') continue;
    if (appended === 'refused') return false;
    recordRun(state, items, duplicates, appended);
    return true;
  }
  return false;
}

/**
 * Appends the envelopes in order; one outcome per envelope, in the same order. With
 * `options.keep`, every rejection is handed over before any envelope after it is appended: a
 * process that stops half-way (or a batch that fails on the database) leaves every rejected
 * envelope before the last one appended recorded, never to be decided again later, against a log
 * that holds what came after it, where it might go in out of its place.
 *
 * The same event id twice in one call (a producer that published an event again under another
 * Nats-Msg-Id, soon after): the repeats are left out of the append. When every first occurrence
 * of a repeated id goes in, a repeat with the same content is a duplicate of it, and one with
 * other content is refused (it is tried after the append: a refusal changes nothing, so its place
 * in the order does not matter). Otherwise the batch is cut before each repeat, so that the
 * repeat is decided after what precedes it, as if it had come alone.
 */
export async function appendBatch(log: EventLog, envelopes: Envelope[], options: AppendBatchOptions = {}): Promise<BatchOutcome[]> {
  const state = batchState(log, options);
  const items = envelopes.map((envelope, index) => ({ envelope, index }));
  const firstIndex = new Map<string, number>();
  envelopes.forEach((envelope, i) => {
    if (!firstIndex.has(envelope.id)) firstIndex.set(envelope.id, i);
  });
  if (firstIndex.size === envelopes.length) {
    await appendRun(state, items);
    return state.outcomes;
  }

  const firsts = items.filter(({ envelope, index }) => firstIndex.get(envelope.id) === index);
  if (!(await appendWhole(state, firsts))) {
    for (const chunk of chunksWithoutRepeatedIds(items)) await appendRun(state, chunk);
    return state.outcomes;
  }
  for (const item of items) {
    if (state.outcomes[item.index]) continue; // a first occurrence, appended or a duplicate
    const first = envelopes[firstIndex.get(item.envelope.id)!]!;
    const outcome = state.outcomes[firstIndex.get(item.envelope.id)!]!;
    if (outcome.status !== 'rejected' && sameEvent(first, item.envelope)) state.record(item, { status: 'duplicate', event: { ...outcome.event, duplicate: true } });
    else state.record(item, await appendOne(log, item.envelope, state.beforeAppend, state.appendOptions));
  }
  return state.outcomes;
}
