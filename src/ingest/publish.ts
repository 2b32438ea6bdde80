/**
 * The producer client (contract.md, "NATS ingestion"): validates an event against the catalogue
 * before anything is sent, publishes it to `condastore.events.<type>` with `Nats-Msg-Id: <id>`,
 * and waits for JetStream's acknowledgement, after which the event is stored in the stream and
 * will reach the log (or `event_store.rejected_messages`, if an append-time rule refuses it).
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from 'nats';
import {
  definitionOf,
  EventValidationError,
  isEventType,
  unstorable,
  upcast,
  validateEnvelope,
  type CatalogueEvent,
  type Envelope,
  type EnvelopeMetadata,
  type EventData,
  type EventType,
  type ExpectedVersion,
} from '../catalogue/index.js';
import { brokenDataRule } from '../decide/data-rules.js';
import { NoRespondersError, publishAcked } from './jetstream-acks.js';
import { eventSubject, resolveNames, type IngestNames } from './stream.js';

/** An event to publish: an envelope whose id (a fresh uuid) and stream (from its data) may be left out. */
export type EventToPublish<T extends EventType = EventType> = {
  [K in T]: { id?: string; type: K; stream?: string; expectedVersion?: ExpectedVersion; data: EventData<K>; metadata?: EnvelopeMetadata };
}[T];

export interface PublishOptions {
  /** Subject prefix and stream name, when not the contract's (condastore, CONDA_STORE_EVENTS). */
  names?: Partial<IngestNames>;
  /** Milliseconds to wait for JetStream's acknowledgement; default 5,000. */
  timeoutMs?: number;
}

export interface PublishEventsOptions extends PublishOptions {
  /**
   * Publishes awaiting their acknowledgement at once; default 1 (each event after the previous
   * one's acknowledgement). One connection keeps its messages in order, so a larger window keeps
   * the order too as long as every publish succeeds; when one fails, events after it may already
   * be in the stream, ahead of it. For bulk traffic whose events do not depend on each other
   * beyond their own stream (a channel sync), where a retry of the whole list is the recovery.
   */
  maxInFlight?: number;
}

export interface PublishedEvent {
  id: string;
  type: string;
  stream: string;
  subject: string;
  /** The message's sequence in the JetStream stream. */
  sequence: number;
  /** True when JetStream had already stored a message with this id (within its duplicate window). */
  duplicate: boolean;
}

/**
 * Completes (id, stream) and validates an event as it will be sent: its JSON, read back, which is
 * what the ingester sees (a field set to undefined is left out of JSON, a Date becomes a string).
 * Throws EventValidationError before anything is sent.
 */
export function toEnvelope(event: EventToPublish | Envelope): Envelope {
  const candidate: Record<string, unknown> = { ...event };
  if (candidate.id === undefined) candidate.id = randomUUID();
  if (candidate.stream === undefined && typeof event.type === 'string' && isEventType(event.type)) {
    try {
      candidate.stream = (definitionOf(event.type).streamOf as (data: unknown) => string)(event.data);
    } catch {
      // invalid data: validation below says what is wrong with it
    }
  }
  // JSON has no NaN or Infinity: JSON.stringify writes null in their place, which would then be
  // validated, and sent, as if it had been given. What the log cannot keep is refused first.
  const lost = [...unstorable(candidate.data, '/data'), ...unstorable(candidate.metadata, '/metadata')];
  if (lost.length) throw new EventValidationError(typeof event.type === 'string' ? event.type : undefined, lost);
  let body: string;
  let sent: unknown;
  try {
    body = JSON.stringify(candidate);
    sent = JSON.parse(body);
  } catch (error) {
    // A BigInt, or a cycle: nothing a JSON producer could send.
    throw new EventValidationError(typeof event.type === 'string' ? event.type : undefined, [{ path: '', message: `cannot be sent as JSON: ${(error as Error).message}` }]);
  }
  const envelope = validateEnvelope(sent);
  // The rules between fields (a build key version 3 with its hash), which the ingester checks
  // at append: refused here, before JetStream takes an event that would only be rejected.
  const broken = brokenDataRule(upcast(envelope) as CatalogueEvent);
  if (broken) throw new EventValidationError(envelope.type, [broken]);
  // Unchanged by validation (the usual case: it returns a copy only to lowercase the id or drop a
  // null metadata): its JSON is the text just made, sent as it is.
  if (envelope === sent) bodies.set(envelope, body);
  return envelope;
}

/** The JSON of envelopes made by toEnvelope, when it is the text they were validated from. */
const bodies = new WeakMap<Envelope, string>();

/** toEnvelope for each event of a list, an invalid one named by its place in the list. */
function toEnvelopes(events: (EventToPublish | Envelope)[]): Envelope[] {
  return events.map((event, index) => {
    try {
      return toEnvelope(event);
    } catch (error) {
      if (error instanceof EventValidationError) throw error.at(`events[${index}]`);
      throw error;
    }
  });
}

/** Thrown when no JetStream stream captures the subject (the stream does not exist yet). */
export class NoStreamError extends Error {
  override name = 'NoStreamError';
}

/**
 * What a failed publish carries besides its own error: the envelope it sent (publishEvent) or
 * every envelope of the call (publishEvents), ids filled in. An event given without an id gets a
 * fresh one at each call, so a retry publishes these, which JetStream and the ingester recognise
 * as the same events, never the events as first given.
 */
export interface PublishFailure {
  envelope?: Envelope;
  envelopes?: Envelope[];
}

/** `error` with `failure` on it (an Error of the client's or of nats.js; anything else as it is). */
function withFailure(error: unknown, failure: PublishFailure): unknown {
  return error instanceof Error ? Object.assign(error, failure) : error;
}

async function publishValidated(nc: NatsConnection, envelope: Envelope, names: IngestNames, timeoutMs: number): Promise<PublishedEvent> {
  const subject = eventSubject(names, envelope.type);
  try {
    const ack = await publishAcked(nc, subject, bodies.get(envelope) ?? JSON.stringify(envelope), envelope.id, names.stream, timeoutMs);
    return { id: envelope.id, type: envelope.type, stream: envelope.stream, subject, sequence: ack.seq, duplicate: ack.duplicate };
  } catch (error) {
    const failure = !(error instanceof NoRespondersError) ? error : new NoStreamError(
      `no JetStream stream captures ${subject} on ${nc.getServer()}: start conda-store-events serve (it creates stream ${names.stream}) or create the stream`,
    );
    throw withFailure(failure, { envelope });
  }
}

/**
 * Validates one event, publishes it and waits for the JetStream acknowledgement. On a failure the
 * error carries the envelope sent (PublishFailure.envelope): publish that to retry.
 */
export async function publishEvent(nc: NatsConnection, event: EventToPublish | Envelope, options: PublishOptions = {}): Promise<PublishedEvent> {
  const envelope = toEnvelope(event);
  const names = resolveNames(options.names);
  return publishValidated(nc, envelope, names, options.timeoutMs ?? 5000);
}

/**
 * Validates every event first (nothing is sent if one is invalid), then publishes them one after
 * the other, each after the previous one's acknowledgement: they reach the log in this order. On
 * a failure, the events before it are published; publishing the list again is safe when it is the
 * same envelopes, ids included (the ingester ignores an event id it already has): the error
 * carries them (PublishFailure.envelopes).
 */
export async function publishEvents(nc: NatsConnection, events: (EventToPublish | Envelope)[], options: PublishEventsOptions = {}): Promise<PublishedEvent[]> {
  const envelopes = toEnvelopes(events);
  const names = resolveNames(options.names);
  const timeoutMs = options.timeoutMs ?? 5000;
  const window = Math.max(1, Math.floor(options.maxInFlight ?? 1));
  const published: PublishedEvent[] = new Array(envelopes.length);
  if (window === 1) {
    try {
      for (let i = 0; i < envelopes.length; i++) published[i] = await publishValidated(nc, envelopes[i]!, names, timeoutMs);
    } catch (error) {
      throw withFailure(error, { envelopes });
    }
    return published;
  }
  // Sent in order from one connection; at most `window` acknowledgements outstanding. The window
  // is refilled in bursts once half of it has come back: publishes made in one go leave in one
  // socket write (nats.js flushes its buffer once per microtask turn), where one publish per
  // acknowledgement cost one system call each, the largest cost of a bulk publisher.
  const inFlight = new Set<Promise<void>>();
  let refill: (() => void) | undefined;
  let failure: unknown;
  for (let i = 0; i < envelopes.length && failure === undefined; i++) {
    if (inFlight.size >= window) {
      await new Promise<void>((resolve) => (refill = resolve));
      // Woken by a failure: nothing more goes out ahead of the event that failed.
      if (failure !== undefined) break;
    }
    const sending: Promise<void> = publishValidated(nc, envelopes[i]!, names, timeoutMs).then(
      (result) => void (published[i] = result),
      (error) => void (failure ??= error),
    ).finally(() => {
      inFlight.delete(sending);
      if (refill && (inFlight.size <= window / 2 || failure !== undefined)) {
        refill();
        refill = undefined;
      }
    });
    inFlight.add(sending);
  }
  await Promise.all(inFlight);
  if (failure !== undefined) throw withFailure(failure, { envelopes });
  return published;
}
