/**
 * Publishing to JetStream and waiting for its acknowledgement, with every acknowledgement of a
 * connection collected by one subscription (`<inbox>.*`, a token per publish).
 *
 * nats.js's `js.publish()` does the same through its request machinery, which creates, for every
 * publish, a request object, a timer, a deferred and (on completion, always) an Error with its
 * stack trace: more than half of a bulk publisher's CPU, most of it garbage. Here a publish is a
 * map entry; deadlines are checked by one interval timer that runs only while acknowledgements
 * are awaited.
 */
import { createInbox, headers, type Msg, type NatsConnection } from 'nats';

/** JetStream's acknowledgement of a stored message. */
export interface PubAck {
  stream: string;
  seq: number;
  /** The stream had a message with this id already (within its duplicate window). */
  duplicate: boolean;
}

/**
 * No JetStream stream captures the subject: the server answered "no responders" (503). It does so
 * for connections with headers and no-responders on (nats.js's defaults); on others, such a
 * publish ends as not acknowledged.
 */
export class NoRespondersError extends Error {
  override name = 'NoRespondersError';
}

/** JetStream refused the message (e.g. the expected stream is not the one that captures the subject). */
export class JetStreamPublishError extends Error {
  override name = 'JetStreamPublishError';
  constructor(message: string, readonly code: number) {
    super(message);
  }
}

/**
 * No acknowledgement came: its timeout passed (checked every 50 ms, so up to 50 ms late; time the
 * publishing process itself was held up, its event loop blocked, does not count), or the
 * connection closed first. The message may or may not be stored; publishing it again is safe
 * (same id: JetStream's duplicate window, then the ingester, keep it once).
 */
export class PublishNotAcknowledgedError extends Error {
  override name = 'PublishNotAcknowledgedError';
  constructor(message: string, readonly reason: 'timeout' | 'closed') {
    super(message);
  }
}

interface Awaited {
  resolve(ack: PubAck): void;
  reject(error: Error): void;
  deadline: number;
  subject: string;
  timeoutMs: number;
}

interface AckCollector {
  closed(): boolean;
  publish(subject: string, payload: string, msgId: string, stream: string, timeoutMs: number): Promise<PubAck>;
}

const SWEEP_MS = 50;
const collectors = new WeakMap<NatsConnection, AckCollector>();

/** Publishes `payload` to `subject` with Nats-Msg-Id and Nats-Expected-Stream; resolves with JetStream's acknowledgement. */
export function publishAcked(nc: NatsConnection, subject: string, payload: string, msgId: string, stream: string, timeoutMs: number): Promise<PubAck> {
  let collector = collectors.get(nc);
  // A collector whose subscription has closed (the connection closed or drained) is replaced.
  if (!collector || collector.closed()) {
    try {
      collector = createAckCollector(nc, (closed) => collectors.get(nc) === closed && collectors.delete(nc));
    } catch (error) {
      return Promise.reject(error as Error); // a closed connection refuses the subscription
    }
    collectors.set(nc, collector);
  }
  return collector.publish(subject, payload, msgId, stream, timeoutMs);
}

function createAckCollector(nc: NatsConnection, onClosed: (collector: AckCollector) => void): AckCollector {
  const inboxPrefix = (nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix;
  const prefix = createInbox(inboxPrefix);
  const awaited = new Map<string, Awaited>();
  let counter = 0;
  let sweeper: ReturnType<typeof setInterval> | undefined;

  const settle = (token: string, outcome: (entry: Awaited) => void) => {
    const entry = awaited.get(token);
    if (!entry) return; // late, after its timeout
    awaited.delete(token);
    if (awaited.size === 0 && sweeper) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
    outcome(entry);
  };
  // An error of its own for each publish: a caller may add to it (publish.ts adds the envelope sent).
  const failAll = (error: () => Error) => {
    for (const token of [...awaited.keys()]) settle(token, (entry) => entry.reject(error()));
  };

  const subscription = nc.subscribe(`${prefix}.*`, {
    callback: (error, msg: Msg) => {
      if (error) return failAll(() => Object.assign(new Error(error.message, { cause: error }), { code: (error as { code?: unknown }).code }));
      settle(msg.subject.slice(prefix.length + 1), (entry) => {
        if (msg.headers?.code === 503) return entry.reject(new NoRespondersError(`no responders for ${entry.subject}`));
        try {
          const ack = msg.json<{ stream?: string; seq?: number; duplicate?: boolean; error?: { code: number; description: string } }>();
          if (ack.error) return entry.reject(new JetStreamPublishError(ack.error.description, ack.error.code));
          if (!ack.stream || typeof ack.seq !== 'number') return entry.reject(new JetStreamPublishError(`invalid JetStream acknowledgement: ${msg.string()}`, 0));
          entry.resolve({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate ?? false });
        } catch (parseError) {
          entry.reject(parseError as Error);
        }
      });
    },
  });
  void subscription.closed.then(() => {
    onClosed(collector);
    failAll(() => new PublishNotAcknowledgedError('the NATS connection closed before JetStream acknowledged the message', 'closed'));
  });

  // When the sweep last ran (or the sweeper started): a sweep that comes late finds the process
  // was held up (synchronous work, a long GC pause), and that time does not count against the
  // server. The timers run before the socket is read: without this, a process that validated a
  // large batch for 5 s after sending its first publishes failed them on their deadlines with
  // their acknowledgements waiting unread in the socket, or the publishes themselves still in
  // the client's buffer (bench/ingest, whose four publishers validate 50,000 events each before
  // their first send, failed so in three of four runs on a slower machine).
  let lastSweep = 0;
  const sweep = () => {
    const now = Date.now();
    const held = now - lastSweep - SWEEP_MS;
    lastSweep = now;
    if (held > SWEEP_MS) for (const entry of awaited.values()) entry.deadline += held;
    for (const [token, entry] of awaited) {
      if (entry.deadline <= now) {
        settle(token, (expired) => expired.reject(new PublishNotAcknowledgedError(`no JetStream acknowledgement for ${expired.subject} within ${expired.timeoutMs} ms`, 'timeout')));
      }
    }
  };

  const collector: AckCollector = {
    closed: () => subscription.isClosed(),
    publish(subject, payload, msgId, stream, timeoutMs) {
      const token = (counter++).toString(36);
      const h = headers();
      h.set('Nats-Msg-Id', msgId);
      h.set('Nats-Expected-Stream', stream);
      return new Promise<PubAck>((resolve, reject) => {
        awaited.set(token, { resolve, reject, deadline: Date.now() + timeoutMs, subject, timeoutMs });
        if (!sweeper) {
          lastSweep = Date.now();
          sweeper = setInterval(sweep, SWEEP_MS);
        }
        try {
          nc.publish(subject, payload, { reply: `${prefix}.${token}`, headers: h });
        } catch (error) {
          settle(token, (entry) => entry.reject(error as Error));
        }
      });
    },
  };
  return collector;
}
