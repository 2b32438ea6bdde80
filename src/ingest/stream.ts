/**
 * The JetStream side of ingestion (contract.md, "NATS ingestion"): the names, the stream
 * `CONDA_STORE_EVENTS` on `condastore.events.>` and the durable pull consumer of `serve`.
 * The names are configurable (tests and benches use streams of their own); the defaults are the
 * contract's.
 */
import {
  AckPolicy,
  connect,
  DeliverPolicy,
  DiscardPolicy,
  nanos,
  RetentionPolicy,
  StorageType,
  type ConnectionOptions,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamManager,
  type NatsConnection,
  type StreamConfig,
  type StreamInfo,
} from 'nats';

export interface IngestNames {
  /** JetStream stream name; default CONDA_STORE_EVENTS. */
  stream: string;
  /** First subject token: events on `<prefix>.events.<EventType>`, ids on `<prefix>.ids.<kind>`; default condastore. */
  subjectPrefix: string;
  /** Durable consumer name of the ingester; default conda-store-events. */
  durable: string;
}

export const DEFAULT_INGEST_NAMES: IngestNames = Object.freeze({
  stream: 'CONDA_STORE_EVENTS',
  subjectPrefix: 'condastore',
  durable: 'conda-store-events',
});

/**
 * The names from the environment: NATS_STREAM, NATS_SUBJECT_PREFIX, NATS_DURABLE (all optional;
 * for running a second, separate ingestion on the same NATS server, e.g. in tests).
 */
export function ingestNamesFromEnv(env: NodeJS.ProcessEnv = process.env): IngestNames {
  return resolveNames({ stream: env.NATS_STREAM || undefined, subjectPrefix: env.NATS_SUBJECT_PREFIX || undefined, durable: env.NATS_DURABLE || undefined });
}

export function resolveNames(names: Partial<IngestNames> = {}): IngestNames {
  const resolved = {
    stream: names.stream ?? DEFAULT_INGEST_NAMES.stream,
    subjectPrefix: names.subjectPrefix ?? DEFAULT_INGEST_NAMES.subjectPrefix,
    durable: names.durable ?? DEFAULT_INGEST_NAMES.durable,
  };
  if (!/^[A-Za-z0-9_-]+$/.test(resolved.stream)) throw new Error(`invalid JetStream stream name "${resolved.stream}" (letters, digits, _ and - only)`);
  if (!/^[A-Za-z0-9_-]+$/.test(resolved.durable)) throw new Error(`invalid durable consumer name "${resolved.durable}" (letters, digits, _ and - only)`);
  if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(resolved.subjectPrefix)) throw new Error(`invalid subject prefix "${resolved.subjectPrefix}" (dot-separated tokens, no wildcards)`);
  return resolved;
}

/** `condastore.events.>`: every subject the stream captures. */
export const eventsWildcard = (names: IngestNames) => `${names.subjectPrefix}.events.>`;
/** `condastore.events.BuildStarted`: where an event of a type is published. */
export const eventSubject = (names: IngestNames, type: string) => `${names.subjectPrefix}.events.${type}`;
/** `condastore.ids.*`: the id-allocation requests. */
export const idsWildcard = (names: IngestNames) => `${names.subjectPrefix}.ids.*`;
export const idsSubject = (names: IngestNames, kind: string) => `${names.subjectPrefix}.ids.${kind}`;

export interface ConsumerSettings {
  /** How long a delivered message may stay unacked before JetStream redelivers it; default 30 s. */
  ackWaitMs?: number;
  /** Unacked messages at most (across every fetch); default 20,000. */
  maxAckPending?: number;
  /**
   * The largest fetch the ingester makes: messages, and how long it waits (default 500 and
   * 1,000 ms, the ingester's defaults). An existing consumer must allow it (consumerProblems).
   */
  fetch?: { maxMessages: number; expiresMs: number };
}

/**
 * The ingester's defaults (`serve --ingest-batch-size`, and its fetches' expiry, also their least),
 * against which an existing consumer is checked when the ingester's own are not given.
 */
export const DEFAULT_FETCH = { maxMessages: 500, expiresMs: 1000 } as const;

/**
 * NATS_URL as connection options: a comma-separated list of servers, spaces allowed, whose URLs may
 * carry a user and a password (`nats://app:secret@host:4222`) or a token (`nats://s3cr3t@host`).
 * nats.js reads neither from a server's URL, so they go to the options (authentication failed
 * before), and the servers go without them.
 */
export function natsConnectionOptions(url: string): Pick<ConnectionOptions, 'servers' | 'user' | 'pass' | 'token'> {
  let auth: Pick<ConnectionOptions, 'user' | 'pass' | 'token'> = {};
  const servers = url.split(',').map((server) => server.trim()).map((server) => {
    const parsed = withCredentials(server);
    if (!parsed) return server;
    const [user, pass] = [decodeURIComponent(parsed.username), decodeURIComponent(parsed.password)];
    auth = pass ? { user, pass } : { token: user };
    return withoutCredentials(parsed);
  });
  return { servers, ...auth };
}

/** NATS_URL for a log line or a message: each server without its user, password or token. */
export function redactedNatsUrl(url: string): string {
  return url.split(',').map((server) => server.trim()).map((server) => {
    const parsed = withCredentials(server);
    return parsed ? withoutCredentials(parsed).replace('://', '://***@') : server;
  }).join(',');
}

/** A server's URL, if it carries credentials (a bare host:port gets nats:// to be parsed). */
function withCredentials(server: string): URL | undefined {
  const text = server.includes('://') ? server : `nats://${server}`;
  if (!URL.canParse(text)) return undefined;
  const parsed = new URL(text);
  return parsed.username || parsed.password ? parsed : undefined;
}

function withoutCredentials(parsed: URL): string {
  const copy = new URL(parsed.href);
  copy.username = '';
  copy.password = '';
  return copy.href.replace(/\/$/, '');
}

/** Connection options of a long-running process: reconnect forever, every second. */
export function serviceConnectionOptions(url: string, name: string): ConnectionOptions {
  return {
    ...natsConnectionOptions(url),
    name,
    maxReconnectAttempts: -1,
    // nats.js gives up for good after the same authorization error twice in a row, whatever
    // maxReconnectAttempts says: a server restarted before its accounts or users are in place
    // would end ingestion until serve is restarted by hand.
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: 1000,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
  };
}

/** Connects to NATS for a service (reconnecting forever; the first connection is retried too). */
export function connectNats(url: string, name = 'conda-store-events'): Promise<NatsConnection> {
  return connect(serviceConnectionOptions(url, name));
}

const isNotFound = (error: unknown) => {
  const e = error as { code?: string; api_error?: { err_code?: number }; message?: string };
  return e?.code === '404' || e?.api_error?.err_code === 10059 || e?.api_error?.err_code === 10014 || /not found/i.test(e?.message ?? '');
};

/**
 * Creates the stream if it does not exist: file storage, work-queue retention (a message stays
 * until the ingester has acked it, i.e. until its event is in the log, then goes: the log is the
 * record), JetStream's 2-minute duplicate window on Nats-Msg-Id. An existing stream is used as it
 * is (an operator may have tuned it), as long as it captures the events subjects.
 */
export async function ensureStream(jsm: JetStreamManager, names: IngestNames): Promise<StreamInfo> {
  const subject = eventsWildcard(names);
  try {
    const info = await jsm.streams.info(names.stream);
    if (!info.config.subjects?.includes(subject)) {
      throw new Error(`JetStream stream ${names.stream} exists but does not capture ${subject} (its subjects: ${info.config.subjects?.join(', ') || 'none'})`);
    }
    return info;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  try {
    return await jsm.streams.add({
      name: names.stream,
      subjects: [subject],
      storage: StorageType.File,
      retention: RetentionPolicy.Workqueue,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(2 * 60_000),
      num_replicas: 1,
      description: 'conda-store events, ingested into the event log by conda-store-events serve',
    });
  } catch (error) {
    // Another process created it meanwhile.
    if (/already in use|exists/i.test((error as Error).message)) return jsm.streams.info(names.stream);
    throw error;
  }
}

/** The durable pull consumer's configuration: explicit acks, redelivered forever, from the start. */
export function consumerConfig(names: IngestNames, settings: ConsumerSettings = {}): Partial<ConsumerConfig> {
  return {
    durable_name: names.durable,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(settings.ackWaitMs ?? 30_000),
    max_deliver: -1,
    deliver_policy: DeliverPolicy.All,
    filter_subject: eventsWildcard(names),
    max_ack_pending: settings.maxAckPending ?? 20_000,
    max_waiting: 64,
    description: 'conda-store-events ingester',
  };
}

/**
 * What of an existing consumer's configuration breaks the ingester's guarantees: acks that are
 * not explicit (a message would count as handled before its event is in the log), a delivery
 * limit (the server gives up on a message, its ack floor passes it, and it is never appended), a
 * filter that leaves events out, a start after the stream's first message, or messages delivered
 * without their bodies (headers_only: each would be stored as a rejection, acked, and gone from
 * the work queue). And what keeps it from working at all: a push consumer (nats.js refuses to
 * pull from one, and the ingester retried every 250 ms for ever, the reason lost), a limit on a pull request's size or
 * expiry below the ingester's fetches (`fetch`), which the server refuses with a status that
 * nats.js does not raise, so that ingestion stood still with nothing said.
 */
export function consumerProblems(config: Partial<ConsumerConfig>, names: IngestNames, fetch: { maxMessages: number; expiresMs: number } = DEFAULT_FETCH): string[] {
  const problems: string[] = [];
  if (config.ack_policy !== AckPolicy.Explicit) problems.push(`ack_policy is ${String(config.ack_policy)}, not explicit`);
  if (config.max_deliver !== undefined && config.max_deliver > 0) problems.push(`max_deliver is ${config.max_deliver}, not unlimited (-1)`);
  const filters = [config.filter_subject, ...(config.filter_subjects ?? [])].filter((filter): filter is string => !!filter);
  if (filters.length > 0 && !filters.includes(eventsWildcard(names))) problems.push(`its filter (${filters.join(', ')}) is not ${eventsWildcard(names)}`);
  if (config.deliver_policy !== undefined && config.deliver_policy !== DeliverPolicy.All) problems.push(`deliver_policy is ${String(config.deliver_policy)}, not all`);
  if (config.headers_only) problems.push('headers_only is set: messages would come without their bodies');
  if (config.deliver_subject) problems.push(`it is a push consumer (deliver_subject ${config.deliver_subject}), not a pull consumer`);
  if (config.max_batch !== undefined && config.max_batch > 0 && config.max_batch < fetch.maxMessages) {
    problems.push(`max_batch is ${config.max_batch}, below the ingester's fetches of up to ${fetch.maxMessages} messages (--ingest-batch-size)`);
  }
  if (config.max_expires !== undefined && config.max_expires > 0 && config.max_expires < nanos(fetch.expiresMs)) {
    problems.push(`max_expires is ${config.max_expires / 1e6} ms, below the ingester's fetches of ${fetch.expiresMs} ms`);
  }
  return problems;
}

/**
 * Creates the durable consumer if it does not exist; an existing one is used as it is (its ack
 * wait and limits are the operator's), unless its configuration breaks the guarantees
 * (consumerProblems): then it is refused, named, with what to do.
 */
export async function ensureConsumer(jsm: JetStreamManager, names: IngestNames, settings: ConsumerSettings = {}): Promise<ConsumerInfo> {
  const checked = (info: ConsumerInfo) => {
    const problems = consumerProblems(info.config, names, settings.fetch);
    if (problems.length > 0) {
      throw new Error(`consumer ${names.durable} on stream ${names.stream} cannot be used: ${problems.join('; ')}. Delete it (nats consumer rm ${names.stream} ${names.durable}): serve creates it as it needs it`);
    }
    return info;
  };
  try {
    return checked(await jsm.consumers.info(names.stream, names.durable));
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  try {
    return await jsm.consumers.add(names.stream, consumerConfig(names, settings));
  } catch (error) {
    if (/already in use|exists/i.test((error as Error).message)) return checked(await jsm.consumers.info(names.stream, names.durable));
    throw error;
  }
}

/**
 * The limits of a stream that discard messages the ingester may not have taken yet, one phrase
 * each ("max_age 1h"): a message JetStream acknowledged to its producer and then dropped, during a
 * database outage say, never reaches the log. Work-queue retention alone removes a message only
 * once it is acked; a limit with discard "new" refuses publishes instead, which the producer sees.
 * Pure.
 */
export function discardingLimits(config: Pick<StreamConfig, 'max_age' | 'max_msgs' | 'max_bytes' | 'max_msgs_per_subject' | 'discard'>): string[] {
  const limits: string[] = [];
  if (config.max_age > 0) limits.push(`max_age ${config.max_age / 1e9} s`);
  if (config.max_msgs_per_subject > 0) limits.push(`max_msgs_per_subject ${config.max_msgs_per_subject}`);
  if (config.discard !== DiscardPolicy.New) {
    if (config.max_msgs > 0) limits.push(`max_msgs ${config.max_msgs}`);
    if (config.max_bytes > 0) limits.push(`max_bytes ${config.max_bytes}`);
  }
  return limits;
}

/** The stream and the consumer, created if missing. */
export async function ensureIngestion(nc: NatsConnection, names: IngestNames, settings: ConsumerSettings = {}): Promise<{ stream: StreamInfo; consumer: ConsumerInfo }> {
  const jsm = await nc.jetstreamManager();
  const stream = await ensureStream(jsm, names);
  const consumer = await ensureConsumer(jsm, names, settings);
  return { stream, consumer };
}

export { isNotFound as isNotFoundError };

/** A message that is not in the stream (deleted, purged): not a stream or consumer that is missing. */
export function isNoMessageError(error: unknown): boolean {
  const e = error as { api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10037 || /no message found/i.test(e?.message ?? '');
}
