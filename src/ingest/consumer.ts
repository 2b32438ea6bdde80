/**
 * The ingester: takes events from the JetStream stream into the log (contract.md, "NATS
 * ingestion"; architecture.md: producer ─NATS─▶ ingest ─▶ validate ─▶ decide ─▶ log.append).
 *
 * How a message goes in:
 * - A durable pull consumer is read with bounded fetches (at most `batchSize` messages, expiring
 *   after about a second) into a buffer keyed by stream sequence.
 * - Batches are taken from the buffer in stream order only: a batch is the run of sequences just
 *   after the last one handled (the "floor"). A message that arrives before an older one (a
 *   redelivery after a nak or a crash, another process's leftovers) waits for it. This is what
 *   lets a producer rely on JetStream's order: a namespace it published (and saw acknowledged)
 *   before an environment is appended first, whatever was redelivered in between.
 * - Each message is parsed and validated against the catalogue; the valid ones are decided and
 *   appended with `appendBatch` (one atomic append per batch in the normal case, each message's
 *   expectedVersion honoured); the refused ones, and messages that are not even events, are
 *   stored in `event_store.rejected_messages` (committed durably); then, and only then, every
 *   message of the batch is acked. The counters for `status` follow in the background.
 * - A duplicate (an event id already in the log) is acked without a second append, however it
 *   got here: redelivery, a producer's retry, the same event published again days later.
 * - A transient failure (database unreachable) acks nothing: the batch is nak'ed with a growing
 *   delay and comes back; ingestion resumes by itself when the database does.
 * - One process ingests at a time (an advisory lock, as for projection groups); another takes
 *   over when it dies. Exactly-once does not depend on the lock (the log is idempotent by event
 *   id). An owner that lost the lock while it lives is fenced off: the process that takes over
 *   raises the ingestion's fence, and every write of a session is made with its hold
 *   (migrations/20260101001800_writer_fences.ts), so the old owner's writes stop there, and the
 *   new owner decides its messages in their order.
 */
import type { ConsumerInfo, JetStreamManager, JsMsg, MsgRequest, NatsConnection, StoredMsg, StreamInfo } from 'nats';
import pg from 'pg';
import { createPool, destroyConnections } from '../db/pool.js';
import { EventValidationError, validateEnvelope, type Envelope } from '../catalogue/index.js';
import { appendBatch, type KeptRejection } from '../decide/append-batch.js';
import { FencedError } from '../log/errors.js';
import type { AppendedEvent, EventLog, Fence } from '../log/types.js';
import type { Logger } from '../logger.js';
import { acquireOwnership } from '../projection/ownership.js';
import { isTransient } from '../projection/transient.js';
import { DEFAULT_FETCH, discardingLimits, ensureIngestion, eventSubject, isNoMessageError, resolveNames, type ConsumerSettings, type IngestNames } from './stream.js';
import { backoffMs } from '../backoff.js';
import { settlesWithin, sleep, unlessAborted } from '../sleep.js';
import { sqlFile } from '../log/postgres/sql.js';
import { translateError } from '../log/postgres/errors.js';
import { raiseFence } from '../log/postgres/fences.js';

/** How often the ingestion counters (event_store.ingestion_stats) are written at most. */
const COUNTERS_INTERVAL_MS = 250;
/**
 * How long the ingester waits for a missing message that is in the stream before it reads it from
 * the stream itself (see resolveGap), beyond any retry delay of its own.
 */
const MISSING_MESSAGE_WAIT_MS = 2000;
/** Stream lookups at most per check of a gap in the stream's sequences (resolveGap). */
const MAX_GAP_LOOKUPS = 1000;

export interface IngesterOptions {
  /** A connection the caller owns (connect with `connectNats`: it reconnects forever). */
  nc: NatsConnection;
  log: EventLog;
  /** The database of the rejected messages and counters (and of the ownership lock). */
  databaseUrl: string;
  logger: Logger;
  names?: Partial<IngestNames>;
  /** Used when the consumer has to be created. */
  consumer?: ConsumerSettings;
  /** Messages per database transaction at most; default 500. Batches are what has arrived, up to this: small at low rates, full under load, where the log's append costs least per event. */
  batchSize?: number;
  /** How long one fetch waits for messages (JetStream pull request expiry); default 1,000 ms, at least 1,000. */
  fetchExpiresMs?: number;
  /** Nak delays: the first, doubled at every consecutive failure up to the maximum; default 250 ms to 10 s. */
  retryDelayMs?: { initial?: number; max?: number };
  /** Called after each batch is acked; an error it throws is logged, and ingestion goes on (also onRetry). */
  onBatch?: (report: IngestBatchReport) => void;
  /** Called when a batch is nak'ed because of a transient failure. */
  onRetry?: (info: { messages: number; delayMs: number; error: unknown }) => void;
}

export interface RejectedMessage {
  subject: string;
  sequence: number;
  reason: string;
}

export interface IngestBatchReport {
  messages: number;
  /** Events appended by this batch (first time in the log), with their positions. */
  appended: AppendedEvent[];
  duplicates: number;
  rejected: RejectedMessage[];
  /** The last stream sequence handled. */
  sequence: number;
  /**
   * Where the batch's time went: how long its first message had been in the stream when the batch
   * started (JetStream's clock: delivery and the wait behind the batch before), parsing and
   * validation, decide and append, storing rejected messages.
   */
  timings: { queuedMs: number; validateMs: number; appendMs: number; rejectedMs: number };
}

export interface Ingester {
  /** Ingests until `signal` aborts: then stops fetching, finishes and acks what it holds, and returns. */
  run(signal: AbortSignal): Promise<void>;
}

/** The counters' key in event_store.ingestion_stats. */
export const statsKey = (names: IngestNames) => `${names.stream}/${names.durable}`;

const decoder = new TextDecoder('utf-8', { fatal: true });

const STORE_REJECTIONS_SQL = sqlFile(import.meta.url, 'store-rejections.sql');
const STORED_REJECTIONS_SQL = sqlFile(import.meta.url, 'stored-rejections.sql');
const REJECTIONS_ABOVE_SQL = sqlFile(import.meta.url, 'rejections-above.sql');
const ADD_COUNTS_SQL = sqlFile(import.meta.url, 'add-counts.sql');

/** Increments of the ingestion counters, and the last stream sequence handled (0: none) with its stream's creation time. */
interface Counts {
  accepted: number;
  duplicates: number;
  rejected: number;
  sequence: number;
  streamCreated: string | undefined;
}

/**
 * `earlier` and `later` together: the counts added, and the later sequence when it is of another
 * stream (one created again numbers from 1 again; sessions of a process follow each other), else
 * the greater (add-counts.sql does the same across processes).
 */
export function addCounts(earlier: Counts, later: Counts): Counts {
  let { sequence, streamCreated } = later;
  if (later.sequence === 0) ({ sequence, streamCreated } = earlier);
  else if (earlier.sequence > 0 && earlier.streamCreated === later.streamCreated) sequence = Math.max(earlier.sequence, later.sequence);
  return {
    accepted: earlier.accepted + later.accepted,
    duplicates: earlier.duplicates + later.duplicates,
    rejected: earlier.rejected + later.rejected,
    sequence,
    streamCreated,
  };
}

/** When JetStream stored a message, to the microsecond: the same for every delivery of it. */
function storedAt(msg: Message): string {
  const nanos = msg.info.timestampNanos;
  return new Date(Math.floor(nanos / 1e6)).toISOString().replace('Z', `${String(Math.floor(nanos / 1e3) % 1000).padStart(3, '0')}Z`);
}

/**
 * A message as the ingester uses it: a JetStream delivery, or a message read from the stream
 * directly (fromStream), which has no delivery to ack: its own delivery, when it comes, is below
 * the floor and acked then.
 */
type Message = Pick<JsMsg, 'data' | 'subject' | 'seq' | 'headers' | 'ack' | 'nak' | 'working'> & { info: Pick<JsMsg['info'], 'stream' | 'timestampNanos' | 'redelivered'> };

/** A message read from the stream, as a delivery of it would be (the same stored time, to the nanosecond). */
export function fromStream(stored: StoredMsg, stream: string): Message {
  // RFC 3339 with up to 9 fraction digits; as a decimal string of nanoseconds, parsed as the
  // delivery's reply subject is (the same number, rounding included).
  const [whole, fraction = ''] = stored.timestamp.replace(/Z$/, '').split('.');
  const nanos = BigInt(Date.parse(`${whole}Z`)) * 1_000_000n + BigInt(fraction.padEnd(9, '0').slice(0, 9));
  const nothing = () => undefined;
  return {
    data: stored.data,
    subject: stored.subject,
    seq: stored.seq,
    headers: stored.header,
    // Read because its delivery was lost or its holder died: it may have been handled before.
    info: { stream, timestampNanos: Number(nanos.toString()), redelivered: true },
    ack: nothing,
    nak: nothing,
    working: nothing,
  };
}

export interface Parsed {
  msg: Message;
  envelope?: Envelope;
  reason?: string;
  eventId?: string;
  eventType?: string;
}

/** A message's body as an envelope, or why it is not one. Never throws. */
export function parseMessage(msg: Pick<JsMsg, 'data' | 'subject'>, names: IngestNames): { envelope: Envelope; reason?: undefined; eventId: string; eventType: string } | { envelope?: undefined; reason: string; eventId?: string; eventType?: string } {
  if (msg.data.length === 0) return { reason: 'empty message body (expected a JSON envelope { id, type, stream, data, ... })' };
  let text: string;
  try {
    text = decoder.decode(msg.data);
  } catch {
    return { reason: 'message body is not valid UTF-8 (expected a JSON envelope)' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { reason: `not valid JSON: ${(error as Error).message}` };
  }
  const fields = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
  const eventId = typeof fields.id === 'string' ? fields.id : undefined;
  const eventType = typeof fields.type === 'string' ? fields.type : undefined;
  let envelope: Envelope;
  try {
    envelope = validateEnvelope(value);
  } catch (error) {
    // Anything else the validator throws is a fault of ours, but it must not make this message
    // come back forever and block the ones behind it: it is rejected, with the error, and kept.
    if (!(error instanceof EventValidationError)) return { reason: `could not be validated: ${(error as Error)?.message ?? String(error)}`, eventId, eventType };
    return { reason: `invalid event: ${error.message}`, eventId, eventType };
  }
  const expected = eventSubject(names, envelope.type);
  if (msg.subject !== expected) {
    return { reason: `subject ${msg.subject} does not match the event type ${envelope.type}: publish it to ${expected}`, eventId, eventType };
  }
  return { envelope, eventId: envelope.id, eventType: envelope.type };
}

/**
 * Text as PostgreSQL's text and jsonb take it: no NUL character, no lone surrogate (either would
 * make the row fail to insert, and that message would block every one behind it).
 */
function textColumn(text: string): string {
  return text.replace(/\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

function headersOf(msg: Message): Record<string, string[]> {
  const result: Record<string, string[]> = {};
  if (!msg.headers) return result;
  for (const [key, values] of msg.headers) result[key] = values;
  return result;
}

/**
 * Stores rejected messages: one statement (atomic), committed durably before the messages are
 * acked. A redelivered message lands on its existing row. Returns the rows inserted. With
 * `fence`, only while that hold of it is current (else FencedError, nothing stored).
 */
export async function storeRejections(pool: pg.Pool, rejections: { parsed: Parsed; reason: string }[], fence?: Fence): Promise<number> {
  if (rejections.length === 0) return 0;
  const columns: unknown[][] = Array.from({ length: 10 }, () => []);
  for (const { parsed, reason } of rejections) {
    const { msg } = parsed;
    let text: string | null;
    try {
      text = textColumn(decoder.decode(msg.data));
    } catch {
      text = null;
    }
    const headers = Object.fromEntries(Object.entries(headersOf(msg)).map(([k, v]) => [textColumn(k), v.map(textColumn)]));
    const row = [
      textColumn(msg.subject), JSON.stringify(headers), Buffer.from(msg.data), text, textColumn(reason), msg.info.stream, msg.seq, storedAt(msg),
      parsed.eventId === undefined ? null : textColumn(parsed.eventId), parsed.eventType === undefined ? null : textColumn(parsed.eventType),
    ];
    row.forEach((value, i) => columns[i]!.push(value));
  }
  try {
    const result = await pool.query(STORE_REJECTIONS_SQL, [...columns, fence?.name ?? null, fence?.epoch ?? null]);
    return result.rowCount ?? 0;
  } catch (error) {
    throw translateError(error);
  }
}

const bySequence = (a: { parsed: Parsed }, b: { parsed: Parsed }) => a.parsed.msg.seq - b.parsed.msg.seq;

/**
 * Acks, naks and progress notices are fire-and-forget: while NATS reconnects they are buffered,
 * and on a closed connection they are lost, which only means a redelivery (handled as a duplicate).
 */
function tell(msg: Message, what: 'ack' | 'nak' | 'working', delayMs?: number): void {
  try {
    if (what === 'ack') msg.ack();
    else if (what === 'nak') msg.nak(delayMs);
    else msg.working();
  } catch {
    // connection closed
  }
}

/** Something happened (a message arrived, space freed, the fetch ended): wakes whoever waits. */
function changes() {
  const waiters = new Set<() => void>();
  return {
    notify() {
      for (const wake of [...waiters]) wake();
    },
    wait(ms: number): Promise<void> {
      return new Promise((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, ms);
        waiters.add(wake);
      });
    },
  };
}

/**
 * The most messages a batch takes after `failures` failed batches in a row: the whole batch, then
 * from the second failure half as many each time, down to one. (Halved with a shift, it came back
 * to the whole batch after 32 failures, a shift counting modulo 32: in an outage of some minutes.)
 */
export function batchLimit(batchSize: number, failures: number): number {
  return failures < 2 ? batchSize : Math.max(1, Math.floor(batchSize / 2 ** Math.min(failures - 1, 52)));
}

/** How long a session must have run, without handling a batch, to count as working (the retry delay then starts over). */
const PROVEN_SESSION_MS = 30_000;
/** How long a stop waits for the database to take the last ingestion figures and close. */
const STOP_WAIT_MS = 5_000;

export function createIngester(options: IngesterOptions): Ingester {
  const names = resolveNames(options.names);
  const { nc, log, logger } = options;
  const batchSize = options.batchSize ?? DEFAULT_FETCH.maxMessages;
  const fetchExpiresMs = Math.max(DEFAULT_FETCH.expiresMs, options.fetchExpiresMs ?? DEFAULT_FETCH.expiresMs);
  const retryInitial = options.retryDelayMs?.initial ?? 250;
  const retryMax = options.retryDelayMs?.max ?? 10_000;
  const key = statsKey(names);
  /** The ingestion's lock and fence. */
  const ownershipName = `ingest:${key}`;
  const subjectPrefix = eventSubject(names, '');
  /** Messages held at most (fetched but not yet handled). */
  const bufferCap = batchSize * 4;

  const delayFor = (failures: number) => backoffMs({ initial: retryInitial, max: retryMax }, failures);

  // -------------------------------------------------------------------------------------------
  // One batch: parse, append, store the rejected ones; count.

  /**
   * Verdicts that stand for messages that come again: those of a batch whose append committed
   * but whose rejected messages were not stored (kept here, by stream sequence, until they are),
   * and those stored before the messages' acks were lost (read back, for redeliveries and for the
   * sequences that had a stored rejection when the session started: `storedBefore`).
   * Decided again, a rejected message would meet a log that now holds the messages after it,
   * and could go in, out of its place in the stream's order.
   */
  const unstoredVerdicts = new Map<string, { seq: number; reason: string }>();
  // A message as rejected_messages keys it (a stream created again numbers from 1 again).
  const messageKey = (msg: Message) => `${msg.info.stream}/${msg.seq}/${storedAt(msg)}`;
  async function standingVerdicts(pool: pg.Pool, batch: Parsed[], storedBefore: ReadonlySet<number>): Promise<Map<number, string>> {
    const verdicts = new Map<number, string>();
    if (unstoredVerdicts.size > 0) {
      for (const { msg } of batch) {
        const unstored = unstoredVerdicts.get(messageKey(msg));
        if (unstored) verdicts.set(msg.seq, unstored.reason);
      }
    }
    const again = batch.filter(({ msg }) => (msg.info.redelivered || storedBefore.has(msg.seq)) && !verdicts.has(msg.seq)).map(({ msg }) => msg);
    if (again.length > 0) {
      const { rows } = await pool.query<{ stream_sequence: string; reason: string }>(STORED_REJECTIONS_SQL, [names.stream, again.map((msg) => msg.seq), again.map(storedAt)]);
      for (const row of rows) verdicts.set(Number(row.stream_sequence), row.reason);
    }
    return verdicts;
  }

  /**
   * The counters of event_store.ingestion_stats, written in the background, off the path of a
   * batch: increments gather while a write is in flight and go in the next one (asynchronous
   * commit). They are figures for `status`, not records: a crash may lose the last increments
   * (the messages of a batch whose counts were lost count as duplicates when redelivered).
   */
  function createCounters(pool: pg.Pool) {
    const none = (): Counts => ({ accepted: 0, duplicates: 0, rejected: 0, sequence: 0, streamCreated: undefined });
    let pending = none();
    let writing: Promise<void> | undefined;
    let scheduled: NodeJS.Timeout | undefined;
    const write = async () => {
      while (pending.accepted || pending.duplicates || pending.rejected || pending.sequence) {
        const delta = pending;
        pending = none();
        try {
          await pool.query(ADD_COUNTS_SQL, [key, delta.accepted, delta.duplicates, delta.rejected, delta.sequence, delta.streamCreated ?? null]);
        } catch (error) {
          // Kept for the next write (the database is probably down; the batches fail too).
          pending = addCounts(delta, pending);
          logger.debug({ err: error }, 'ingestion counters not written yet');
          return;
        }
      }
    };
    return {
      add(delta: Counts) {
        pending = addCounts(pending, delta);
        // At most one write per COUNTERS_INTERVAL_MS: one per batch was a statement for every
        // append under a steady trickle of events, for figures only status reads.
        scheduled ??= setTimeout(() => {
          scheduled = undefined;
          writing ??= write().finally(() => (writing = undefined));
        }, COUNTERS_INTERVAL_MS);
      },
      /** Waits for the writes in flight, then writes what is left (at shutdown). */
      async flush() {
        clearTimeout(scheduled);
        scheduled = undefined;
        await writing;
        await write();
      },
    };
  }

  /**
   * Each message parsed and validated once, as it arrives (the reader does it while the batch
   * before is being appended, when this process would otherwise wait for PostgreSQL), not when
   * its batch is taken.
   */
  const parsedMessages = new WeakMap<Message, Parsed>();
  const parsedMessage = (msg: Message): Parsed => {
    let result = parsedMessages.get(msg);
    if (!result) parsedMessages.set(msg, (result = { msg, ...parseMessage(msg, names) }));
    return result;
  };

  async function processBatch(pool: pg.Pool, counters: ReturnType<typeof createCounters>, fence: Fence, batch: Message[], streamCreated: string, storedBefore: ReadonlySet<number>): Promise<IngestBatchReport> {
    const started = performance.now();
    const queuedMs = (msg: Message) => Math.max(0, performance.timeOrigin + started - msg.info.timestampNanos / 1e6);
    const parsedBatch: Parsed[] = batch.map(parsedMessage);
    const standing = await standingVerdicts(pool, parsedBatch, storedBefore);
    const valid = parsedBatch.filter((p) => p.envelope && !standing.has(p.msg.seq));
    const validated = performance.now();
    // Rejected messages, stored before anything behind them is appended (appendBatch's keep for
    // those it refuses): a message decided again after a later one went in could go in out of
    // its place. Those with nothing appended behind them are stored at the end.
    const rejections = parsedBatch
      .filter((p) => p.reason !== undefined || standing.has(p.msg.seq))
      .map((p) => ({ parsed: p, reason: p.reason ?? standing.get(p.msg.seq)! }));
    const storedRejections = new Set<Parsed>();
    const storeThrough = async (sequence: number) => {
      const due = rejections.filter(({ parsed }) => !storedRejections.has(parsed) && parsed.msg.seq <= sequence).sort(bySequence);
      try {
        // Counted as soon as committed: should the batch fail after, their redeliveries land on
        // these rows and insert nothing.
        const inserted = await storeRejections(pool, due, fence);
        if (inserted > 0) counters.add({ accepted: 0, duplicates: 0, rejected: inserted, sequence: 0, streamCreated: undefined });
      } catch (error) {
        // Should the batch's appends have committed, it comes back with these verdicts standing.
        for (const { parsed, reason } of due) unstoredVerdicts.set(messageKey(parsed.msg), { seq: parsed.msg.seq, reason });
        throw error;
      }
      for (const { parsed } of due) storedRejections.add(parsed);
    };
    const refused = (index: number, reason: string) => rejections.push({ parsed: valid[index]!, reason });
    const kept = new Set<number>();
    const keep = async (rejected: KeptRejection[]) => {
      for (const { index, outcome } of rejected) {
        refused(index, outcome.reason);
        kept.add(index);
      }
      await storeThrough(rejected.reduce((through, { index }) => Math.max(through, valid[index]!.msg.seq), 0));
    };
    const sequence = batch[batch.length - 1]!.seq;
    // Those decided already (malformed, or verdicts that stand) go first, before any append.
    if (valid.length > 0 && rejections.length > 0) await storeThrough(sequence);
    const outcomes = valid.length ? await appendBatch(log, valid.map((p) => p.envelope!), { keep, fence }) : [];
    const appendedAt = performance.now();
    const appended: AppendedEvent[] = [];
    let duplicates = 0;
    outcomes.forEach((outcome, i) => {
      if (outcome.status === 'appended') appended.push(outcome.event);
      else if (outcome.status === 'duplicate') duplicates += 1;
      else if (!kept.has(i)) refused(i, outcome.reason);
    });
    rejections.sort(bySequence);
    await storeThrough(sequence);
    // Stored now, and any kept for messages before this batch were handled (by this process or
    // another owner).
    if (unstoredVerdicts.size > 0) for (const [key, { seq }] of unstoredVerdicts) if (seq <= sequence) unstoredVerdicts.delete(key);
    counters.add({ accepted: appended.length, duplicates, rejected: 0, sequence, streamCreated });
    const stored = performance.now();
    for (const { parsed: p, reason } of rejections) {
      logger.warn({ subject: p.msg.subject, sequence: p.msg.seq, eventId: p.eventId, reason }, 'message rejected');
    }
    return {
      messages: batch.length,
      appended,
      duplicates,
      rejected: rejections.map(({ parsed: p, reason }) => ({ subject: p.msg.subject, sequence: p.msg.seq, reason })),
      sequence,
      timings: { queuedMs: queuedMs(batch[0]!), validateMs: validated - started, appendMs: appendedAt - validated, rejectedMs: stored - appendedAt },
    };
  }

  // -------------------------------------------------------------------------------------------
  // One session: while this process owns ingestion and the stream and consumer are there.

  /**
   * The floor: everything at or below this stream sequence is handled (acked by someone, or not in
   * the stream); and when the stream was created, which tells a stream deleted and created again
   * (its sequences start over) from the one the floor belongs to.
   */
  async function serverState(jsm: JetStreamManager): Promise<{ floor: number; created: string }> {
    const [consumer, stream] = await Promise.all([jsm.consumers.info(names.stream, names.durable), jsm.streams.info(names.stream)]);
    return { floor: Math.max(consumer.ack_floor.stream_seq, stream.state.first_seq - 1), created: stream.created };
  }

  async function session(pool: pg.Pool, counters: ReturnType<typeof createCounters>, owned: AbortSignal, fence: Fence, consumerInfo: ConsumerInfo, handled: () => void): Promise<void> {
    const jsm = await nc.jetstreamManager();
    const consumer = await nc.jetstream().consumers.get(names.stream, names.durable);
    const ackWaitMs = Math.max(1000, Math.floor((consumerInfo.config.ack_wait ?? 30e9) / 1e6));
    const start = await serverState(jsm);
    let floor = start.floor;
    const storedBefore = new Set((await pool.query<{ stream_sequence: string }>(REJECTIONS_ABOVE_SQL, [names.stream, floor, start.created])).rows.map((row) => Number(row.stream_sequence)));
    // Ends the session when the stream turns out to be another one: its messages are numbered
    // from 1 again, and at or below the floor they would be taken for handled ones and acked.
    const ended = new AbortController();
    const sameStream = async () => {
      if ((await jsm.streams.info(names.stream)).created === start.created) return true;
      ended.abort(new Error(`stream ${names.stream} was deleted and created again: ingestion starts over on the new stream`));
      changed.notify();
      return false;
    };
    const buffer = new Map<number, Message>();
    const changed = changes();
    let inFlight: Message[] = [];
    let readerDone = false;
    /** The session has handed back what it held: whatever comes after is handed back at once. */
    let over = false;
    let readerError: unknown;
    let failures = 0;

    // Held messages must not be redelivered while this process still works on them.
    const keepAlive = setInterval(() => {
      for (const msg of inFlight) tell(msg, 'working');
      for (const msg of buffer.values()) tell(msg, 'working');
    }, Math.max(500, Math.floor(ackWaitMs / 3)));

    /** The sequence the gate waits for: the one after the floor, or after the batch in flight. */
    const nextExpected = () => (inFlight.length ? inFlight[inFlight.length - 1]!.seq : floor) + 1;
    /** Messages are held but the next one in order is not among them. */
    const blocked = () => buffer.size > 0 && !buffer.has(nextExpected());

    const reader = (async () => {
      try {
        // Room for more: the buffer is not full, or it is full of messages that wait for a missing
        // one, which a fetch may bring (JetStream serves redeliveries first), up to twice its size:
        // beyond, a message that does not come back (its batch failing again and again, each time
        // handed back with a delay) would have every later message fetched, up to the consumer's
        // max_ack_pending (20,000), and is read from the stream instead (resolveGap).
        const room = () => buffer.size < bufferCap || (blocked() && buffer.size < bufferCap * 2);
        // `over`: the session ended without its owner stopping (an error), and a fetch loop left
        // running would nak everything it fetched, for ever, one more loop per failed session.
        const stopped = () => owned.aborted || ended.signal.aborted || over;
        while (!stopped()) {
          while (!room() && !stopped()) await changed.wait(1000);
          if (stopped()) break;
          // Blocked: a whole batch, so that redeliveries (served first) come back at once.
          const messages = await consumer.fetch({ max_messages: blocked() ? batchSize : Math.max(1, Math.min(batchSize, bufferCap - buffer.size)), expires: fetchExpiresMs });
          // The fetch ends when it has its messages or expires; stopping waits for it, so no
          // message is delivered to a subscription that is gone.
          const guard = setTimeout(() => void messages.close(), fetchExpiresMs + 10_000);
          // Asked once per fetch, at its first message at or below the floor: a batch redelivered
          // after its acks were lost would otherwise cost a round trip a message.
          let sameAsFetched: Promise<boolean> | undefined;
          try {
            for await (const msg of messages) {
              // Another stream since, or the session over: what this fetch brings goes back, for
              // the next session (after the session's last sweep, a message held here would come
              // back only after the ack wait).
              if (ended.signal.aborted || over || (msg.seq <= floor && !(await (sameAsFetched ??= sameStream())))) {
                tell(msg, 'nak');
                continue;
              }
              if (msg.seq <= floor) {
                tell(msg, 'ack'); // handled already: a redelivery whose ack was lost
                continue;
              }
              buffer.set(msg.seq, msg);
              changed.notify();
              parsedMessage(msg);
            }
          } finally {
            clearTimeout(guard);
          }
        }
      } catch (error) {
        readerError = error;
      } finally {
        readerDone = true;
        changed.notify();
      }
    })();

    /** The run of sequences just above the floor, up to a batch. */
    const takeRun = (): Message[] => {
      for (const [seq, msg] of buffer) {
        if (seq <= floor) {
          tell(msg, 'ack');
          buffer.delete(seq);
        }
      }
      // After two failures in a row, half the run each time, down to one message: a message that
      // fails its batch with an error not known to be its own (a statement timeout on a large
      // batch, an unknown error code) then holds up only itself, the messages before it go in, and
      // the log names it (the failed batch's first sequence). The whole batch again after a success.
      const most = batchLimit(batchSize, failures);
      const run: Message[] = [];
      for (let seq = floor + 1; run.length < most && buffer.has(seq); seq++) {
        run.push(buffer.get(seq)!);
        buffer.delete(seq);
      }
      if (run.length) changed.notify();
      return run;
    };

    /**
     * Nothing follows the floor but later messages are here. Usually the missing one is on its
     * way (a nak'ed message coming back, a dead owner's message after its ack wait); it may also
     * not exist (deleted from the stream): then it is skipped. One that exists but has not come
     * for a while (`waitedMs`) is read from the stream: its delivery may have been lost on the
     * way (the client closes a fetch's subscription when the fetch ends, and a message the
     * server sent for it after that is dropped) or be held by a process that died, and would
     * otherwise come back only after the consumer's ack wait, with every later message waiting
     * behind it. The stream is a work queue: a message not acked yet is still in it.
     */
    const resolveGap = async (waitedMs: number) => {
      if (!(await sameStream())) return;
      const { floor: serverFloor } = await serverState(jsm);
      if (serverFloor > floor) {
        // The stream's first message is past the floor: messages this session had not taken left
        // the stream without its ack (a work queue removes a message on an ack), deleted or purged
        // by hand, discarded by the stream's limits (their events never reach the log), or acked by
        // another ingester (an owner that lost its lock, finishing its batch).
        logger.warn(
          { stream: names.stream, from: floor + 1, to: serverFloor, messages: serverFloor - floor },
          'messages left the stream without this ingester taking them (deleted, purged, discarded by the stream\'s limits, or acked by another ingester): skipped',
        );
        floor = serverFloor;
        return;
      }
      // Not Math.min(...keys): spread into arguments, a buffer of some 125,000 messages throws.
      let lowest = Infinity;
      for (const seq of buffer.keys()) lowest = Math.min(lowest, seq);
      // After a failed batch, its messages come back after the retry delay: not read before.
      const readAfterMs = MISSING_MESSAGE_WAIT_MS + (failures > 0 ? delayFor(failures - 1) : 0);
      // At most 1,000 lookups per check. Each answers for a whole run of sequences where the
      // server looks for the next message of ours (a million messages of another subject are one
      // lookup), for one sequence where it cannot.
      let read = false;
      for (let lookups = 0, seq = floor + 1; seq < lowest && lookups < MAX_GAP_LOOKUPS; lookups++) {
        const next = await nextOfOurs(jsm, seq);
        if (next.seq > seq) {
          // The floor may pass a sequence that is not there only if nothing before it waits to be
          // handled: after a message read here, the next check skips it.
          if (read) return;
          const last = Math.min(next.seq, lowest) - 1;
          logger.debug({ from: seq, to: last }, 'stream sequences not in the stream; skipped');
          floor = last;
          seq = last + 1;
          if (!next.stored || seq >= lowest) continue;
        }
        // next.stored is the message at seq.
        if (waitedMs < readAfterMs) return; // it exists: wait for its delivery a little longer
        if (!buffer.has(seq)) {
          logger.info({ sequence: seq, waitedMs: Math.round(waitedMs) }, 'message not delivered yet: read from the stream');
          const msg = fromStream(next.stored!, names.stream);
          buffer.set(seq, msg);
          changed.notify();
          parsedMessage(msg);
        }
        read = true;
        seq++;
      }
    };

    /**
     * The first sequence from `seq` on that may hold a message of ours, with that message when
     * the server found one. The request asks for the next message of the events' subjects
     * (`next_by_subj`, NATS 2.9), which answers for a whole run of missing sequences at once. A
     * server that does not know it (an older one, or an older leader of the stream in a cluster
     * being upgraded, whatever the version of the server this client is connected to) answers for
     * `seq` alone; so does "no message" (`seq + 1`), which therefore never skips more than `seq`.
     */
    const nextOfOurs = async (manager: JetStreamManager, seq: number): Promise<{ seq: number; stored?: StoredMsg }> => {
      try {
        // jsm.streams.getMessage's type omits next_by_subj, which the server takes since 2.9.
        const stored = await manager.streams.getMessage(names.stream, { seq, next_by_subj: `${subjectPrefix}>` } as unknown as MsgRequest);
        return stored.subject.startsWith(subjectPrefix) && stored.seq >= seq ? { seq: stored.seq, stored } : { seq: seq + 1 };
      } catch (error) {
        if (!isNoMessageError(error)) throw error;
        return { seq: seq + 1 };
      }
    };

    let blockedSince: number | undefined;
    let lastGapCheck = 0;
    try {
      // Between batches, a process that no longer owns ingestion (stopping, or its lock lost: another
      // may own it by now) takes nothing more; what it holds goes back to JetStream.
      while (!owned.aborted && !ended.signal.aborted) {
        const batch = takeRun();
        if (batch.length === 0) {
          if (readerDone) break;
          if (buffer.size > 0) {
            const now = Date.now();
            blockedSince ??= now;
            if (now - blockedSince >= 200 && now - lastGapCheck >= 1000) {
              lastGapCheck = now;
              await resolveGap(now - blockedSince).catch((error) => logger.warn({ err: error }, 'could not inspect the stream for a missing message'));
              continue;
            }
          } else {
            blockedSince = undefined;
          }
          await changed.wait(buffer.size > 0 ? 200 : 1000);
          continue;
        }
        blockedSince = undefined;
        inFlight = batch;
        let reported: IngestBatchReport | undefined;
        try {
          const report = await processBatch(pool, counters, fence, batch, start.created, storedBefore);
          for (const msg of batch) tell(msg, 'ack');
          floor = batch[batch.length - 1]!.seq;
          failures = 0;
          logger.debug(
            {
              messages: report.messages,
              appended: report.appended.length,
              duplicates: report.duplicates,
              rejected: report.rejected.length,
              sequence: floor,
              position: report.appended.at(-1)?.globalPosition,
              ...report.timings,
            },
            'batch ingested',
          );
          reported = report;
          handled();
        } catch (error) {
          if (error instanceof FencedError) {
            // Another process owns ingestion (this one lost its lock) and decides these messages:
            // handed back at once, and the session ends.
            for (const msg of batch) tell(msg, 'nak');
            throw error;
          }
          // Nothing of this batch is acked: it comes back after the delay, and the messages
          // after it wait for it (they are behind the floor).
          const delayMs = delayFor(failures++);
          for (const msg of batch) tell(msg, 'nak', delayMs);
          const transient = isTransient(error);
          logger[transient ? 'warn' : 'error'](
            { err: error, messages: batch.length, delayMs, firstSequence: batch[0]!.seq },
            transient ? 'database unavailable: batch nak\'ed, retrying after the delay' : 'batch failed: nak\'ed, retrying after the delay',
          );
          callback('onRetry', () => options.onRetry?.({ messages: batch.length, delayMs, error }));
        } finally {
          inFlight = [];
        }
        if (reported) callback('onBatch', () => options.onBatch?.(reported));
      }
    } finally {
      clearInterval(keepAlive);
      // The session is over: the fetch in flight hands back what it brings, and none follows.
      over = true;
      if (!readerDone) await settlesWithin(reader, fetchExpiresMs + 2000);
      // What is left could not be handled in order: it goes back to JetStream for the next owner.
      for (const msg of buffer.values()) tell(msg, 'nak');
      buffer.clear();
    }
    if (ended.signal.aborted && !owned.aborted) throw ended.signal.reason;
    if (readerError && !owned.aborted) throw readerError;
  }

  /**
   * A caller's callback, whose error is logged: it is about figures the caller keeps, and failing
   * the session for it would hand back and fetch again, for every batch, what was being ingested.
   */
  function callback(name: string, call: () => void): void {
    try {
      call();
    } catch (error) {
      logger.error({ err: error }, `the ${name} callback threw; ingestion goes on`);
    }
  }

  // -------------------------------------------------------------------------------------------

  return {
    async run(signal: AbortSignal): Promise<void> {
      const onError = (error: unknown) => logger.warn({ err: error }, 'ingestion pool: connection lost');
      const pool = createPool({ connectionString: options.databaseUrl, max: 1, connectionTimeoutMillis: 10_000, onError });
      const countersPool = createPool({ connectionString: options.databaseUrl, max: 1, connectionTimeoutMillis: 10_000, options: '-c synchronous_commit=off', onError });
      const counters = createCounters(countersPool);
      let failures = 0;
      let warnedLimits = false;
      const pause = async (error: unknown, what: string) => {
        const delayMs = delayFor(failures++);
        logger.warn({ err: error, delayMs }, what);
        await sleep(delayMs, signal);
      };
      /** The ownership connection was lost (the database is probably down): the lock is taken again after the delay. */
      const lockLost = () => pause(new Error('ownership connection lost'), 'database connection lost; ingestion resumes when it is back');
      try {
        while (!signal.aborted) {
          if (nc.isClosed()) throw new Error('the NATS connection is closed');
          let consumerInfo: ConsumerInfo;
          try {
            let streamInfo: StreamInfo;
            ({ stream: streamInfo, consumer: consumerInfo } = await ensureIngestion(nc, names, { ...options.consumer, fetch: { maxMessages: batchSize, expiresMs: fetchExpiresMs } }));
            const limits = discardingLimits(streamInfo.config);
            if (limits.length > 0 && !warnedLimits) {
              warnedLimits = true;
              logger.warn({ stream: names.stream, limits }, `stream ${names.stream} discards messages by its limits (${limits.join(', ')}): those not ingested in time, during a database outage say, never reach the log`);
            }
          } catch (error) {
            await pause(error, `NATS: cannot set up stream ${names.stream} and consumer ${names.durable}; retrying`);
            continue;
          }
          let ownership;
          try {
            ownership = await acquireOwnership(options.databaseUrl, ownershipName, {
              signal,
              onWaiting: () => logger.info({ stream: names.stream, durable: names.durable }, 'another process is ingesting; waiting to take over'),
            });
          } catch (error) {
            if (!isTransient(error)) throw error;
            await pause(error, 'database unavailable; ingestion resumes when it is back');
            continue;
          }
          if (!ownership) break;
          const owned = AbortSignal.any([signal, ownership.lost]);
          // The lock alone does not stop an owner that lost it while it lives (its lock's
          // connection ended, its others not): its batch in flight would go on being written
          // beside this session's. Every write of this session holds this fence, raised once that
          // owner's writes in flight have committed; any it makes after fails. Not waited for past
          // a stop or the lock's loss (a network cut at worst). An error that is not a lost
          // connection (a role that may not write event_store.fences) stops the ingester, as one
          // when the lock is taken does.
          let fence: Fence | undefined;
          try {
            // Raised on the lock's own connection, not through the log's pool: a raise committed
            // after the next owner's would fence that owner off, and one made by the session that
            // holds the lock cannot commit once another process has taken it. On the pool, a raise
            // still on its way when the lock was lost (a network cut) could (a review, 2026-12-07).
            // Not started at all once the lock is lost.
            fence = owned.aborted ? undefined : await unlessAborted(ownership.run((client) => raiseFence(client, ownershipName)), owned);
          } catch (error) {
            await ownership.release();
            if (!isTransient(error)) throw error;
            await pause(error, 'database unavailable; ingestion resumes when it is back');
            continue;
          }
          if (!fence) {
            // Stopping, or the lock lost meanwhile (taken again above, after the delay).
            await ownership.release();
            if (!signal.aborted) await lockLost();
            continue;
          }
          // The next failure starts from the first delay once a session has shown that it works:
          // it handled a batch, or ran for a while. Reset as soon as ownership was taken, a session
          // that fails at its start (a fetch the server refuses) was retried every 250 ms for ever.
          const began = Date.now();
          let handledBatch = false;
          const proven = () => handledBatch || Date.now() - began >= PROVEN_SESSION_MS;
          try {
            logger.info({ stream: names.stream, durable: names.durable, subjects: `${subjectPrefix}>`, fenceEpoch: fence.epoch }, 'ingesting events from NATS');
            await session(pool, counters, owned, fence, consumerInfo, () => (handledBatch = true));
            if (proven()) failures = 0;
            if (!signal.aborted) {
              // The ownership connection was lost: the database is probably down.
              await lockLost();
            }
          } catch (error) {
            if (proven()) failures = 0;
            await pause(error, error instanceof FencedError ? 'another process has taken ingestion over: this session stops, nothing more of its batch is written' : 'ingestion interrupted; resuming');
          } finally {
            await ownership.release();
          }
        }
      } finally {
        // The figures (not records) and idle connections: a database that does not answer (a
        // network cut, no reset) would hold the stop until the connections' keepalives give up,
        // and a supervisor would kill the process rather than see it exit.
        const closed = (async () => {
          await counters.flush().catch(() => undefined);
          await Promise.all([pool.end(), countersPool.end()]).catch(() => undefined);
        })();
        if (!(await settlesWithin(closed, STOP_WAIT_MS))) {
          logger.warn({ waitedMs: STOP_WAIT_MS }, 'the database did not answer at the stop: the ingestion figures since their last write are not written');
          // Their sockets would hold a process that embeds the ingester open until then.
          destroyConnections(pool);
          destroyConnections(countersPool);
        }
      }
    },
  };
}
