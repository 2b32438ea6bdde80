/**
 * Id allocation over NATS request-reply (events.md, "Identity and determinism"), for producers
 * that do not link the library (conda-store is Python): a request on `condastore.ids.<kind>` with
 * body `{"n": 10}` (n optional, default 1) is answered `{"ids": [..]}` from the kind's sequence,
 * or `{"error": "..."}`. Responders of several `serve` processes share a queue group, so each
 * request is answered once.
 */
import type { Msg, NatsConnection, Subscription } from 'nats';
import { ID_KINDS, isIdKind } from '../catalogue/index.js';
import type { EventLog } from '../log/types.js';
import type { Logger } from '../logger.js';
import { isTransient } from '../projection/transient.js';
import { idsSubject, idsWildcard, resolveNames, type IngestNames } from './stream.js';
import { backoffMs } from '../backoff.js';
import { settlesWithin } from '../sleep.js';

/** The most ids one request may take. */
export const MAX_IDS_PER_REQUEST = 10_000;

/**
 * Requests answered at once, and waiting beyond them, per responder: the allocations share the
 * log's pool with the ingester's appends and the subscribers' reads, and a flood of requests
 * would otherwise queue there without bound and hold them up. A request beyond both is answered
 * at once with an error saying to try again.
 */
export const MAX_IDS_REQUESTS_AT_ONCE = 4;
export const MAX_IDS_REQUESTS_WAITING = 1000;

export interface IdsReply {
  ids?: number[];
  error?: string;
}

/** Parses a request body: `{"n": 10}`, `{}` or empty (n = 1). Throws with a message for the requester. */
function requestedCount(data: Uint8Array): number {
  const text = new TextDecoder().decode(data).trim();
  if (text === '') return 1;
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`request body must be JSON like {"n": 10}, got ${JSON.stringify(text.slice(0, 60))}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('request body must be a JSON object like {"n": 10}');
  const extra = Object.keys(body).filter((key) => key !== 'n');
  if (extra.length) throw new Error(`unknown field ${extra.map((k) => JSON.stringify(k)).join(', ')} (the body is {"n": <count>})`);
  const n = (body as { n?: unknown }).n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_IDS_PER_REQUEST) {
    throw new Error(`n must be an integer from 1 to ${MAX_IDS_PER_REQUEST}, got ${JSON.stringify(n)}`);
  }
  return n;
}

/** Answers one request. */
export async function answerIdsRequest(log: EventLog, kind: string, data: Uint8Array): Promise<IdsReply> {
  if (!isIdKind(kind)) return { error: `unknown id kind ${JSON.stringify(kind)} (known: ${ID_KINDS.join(', ')})` };
  let n: number;
  try {
    n = requestedCount(data);
  } catch (error) {
    return { error: (error as Error).message };
  }
  try {
    return { ids: await log.allocateIds(kind, n) };
  } catch (error) {
    const message = (error as Error).message;
    return { error: isTransient(error) ? `database unavailable, try again: ${message}` : message };
  }
}

export interface IdsResponder {
  /** The subscription answering now (a new one after the server closed the one before). */
  readonly subscription: Subscription;
  /**
   * Stops taking requests and resolves once every request in hand is answered: those being
   * allocated with their ids, those still waiting for a slot with an error that says to ask
   * again (another `serve` of the queue group takes the retry), or once `stopWaitMs` has passed.
   * Drain the connection after it: drained before, the answers still in hand were dropped, and
   * their requesters timed out.
   */
  stop(): Promise<void>;
}

/** The answer to a request that was still waiting for a slot when the responder stopped. */
export const STOPPING_ERROR = 'stopping: ask again';

/** How long a stop waits at most for the allocations in progress (default 10 s). */
export const DEFAULT_STOP_WAIT_MS = 10_000;

/** The delays before subscribing again after the server closed the subscription: doubled from the first to the second. */
export const DEFAULT_RESUBSCRIBE_MS = { initial: 1000, max: 60_000 };

/**
 * Subscribes the responder on `<prefix>.ids.*` in a queue group. A subscription the server
 * refuses or ends (a permissions violation) is made again after a delay, and again, until it
 * holds: fixed permissions bring id allocation back without a restart of serve.
 */
export function startIdsResponder(
  nc: NatsConnection,
  log: EventLog,
  logger: Logger,
  names: Partial<IngestNames> = {},
  { stopWaitMs = DEFAULT_STOP_WAIT_MS, resubscribeMs = DEFAULT_RESUBSCRIBE_MS }: { stopWaitMs?: number; resubscribeMs?: { initial: number; max: number } } = {},
): IdsResponder {
  const resolved = resolveNames(names);
  const prefixLength = idsSubject(resolved, '').length;
  let running = 0;
  let stopped = false;
  // Each resolves with whether it may go (false: the responder stopped while it waited).
  const waiting: ((go: boolean) => void)[] = [];
  const inHand = new Set<Promise<void>>();
  /** Runs `answer` within the limits above, or answers busy (or stopping). */
  const limited = async (answer: () => Promise<IdsReply>): Promise<IdsReply> => {
    if (running >= MAX_IDS_REQUESTS_AT_ONCE) {
      if (waiting.length >= MAX_IDS_REQUESTS_WAITING) {
        return { error: `busy: ${MAX_IDS_REQUESTS_AT_ONCE + MAX_IDS_REQUESTS_WAITING} id requests in hand, try again` };
      }
      if (!(await new Promise<boolean>((resolve) => waiting.push(resolve)))) return { error: STOPPING_ERROR };
    } else {
      running += 1;
    }
    try {
      return await answer();
    } finally {
      // The slot passes to the next one waiting, or is freed.
      const next = waiting.shift();
      if (next) next(true);
      else running -= 1;
    }
  };
  let failures = 0;
  let again: NodeJS.Timeout | undefined;
  const subscribe = (): Subscription => nc.subscribe(idsWildcard(resolved), {
    queue: `${resolved.durable}-ids`,
    callback: (error, msg: Msg) => {
      if (error) {
        // nats.js closes a subscription the server refused (and says so here, once).
        const delayMs = backoffMs(resubscribeMs, failures++);
        logger.warn({ err: error, delayMs }, 'id allocation subscription error: subscribing again after the delay');
        clearTimeout(again);
        again = setTimeout(() => {
          if (stopped || nc.isClosed() || nc.isDraining()) return;
          try {
            subscription = subscribe();
          } catch (subscribeError) {
            // Thrown in a timer, it would end the process: said, and the responder stays down.
            logger.error({ err: subscribeError }, 'id allocation: could not subscribe again');
          }
        }, delayMs);
        again.unref();
        return;
      }
      failures = 0;
      const kind = msg.subject.slice(prefixLength);
      // A publish with nowhere to answer would burn up to 10,000 ids for nobody.
      if (!msg.reply) {
        logger.debug({ kind }, 'id allocation request without a reply subject: ignored');
        return;
      }
      const answered = (stopped ? Promise.resolve({ error: STOPPING_ERROR }) : limited(() => answerIdsRequest(log, kind, msg.data)))
        .then((reply) => {
          if (reply.error) logger.debug({ kind, error: reply.error }, 'id allocation request refused');
          msg.respond(JSON.stringify(reply));
        })
        .catch((error: unknown) => logger.warn({ err: error, kind }, 'could not answer an id allocation request'))
        .finally(() => inHand.delete(answered));
      inHand.add(answered);
    },
  });
  let subscription = subscribe();
  return {
    get subscription() {
      return subscription;
    },
    async stop() {
      stopped = true;
      clearTimeout(again);
      for (const go of waiting.splice(0)) go(false);
      // Drained, not only unsubscribed: the requests the server had sent before the unsubscribe
      // are answered too (with STOPPING_ERROR). The drain's flush waits for the server: bounded
      // by the same deadline, for a server that does not answer.
      const allAnswered = subscription
        .drain()
        .catch(() => subscription.unsubscribe())
        .then(() => Promise.all(inHand))
        .then(() => true);
      const answeredInTime = await settlesWithin(allAnswered, stopWaitMs);
      // Past the requesters' own timeout (5 s by default) an answer helps nobody, and the stop
      // must not wait for ever on a database that does not answer.
      if (!answeredInTime) logger.warn({ requests: inHand.size, waitedMs: stopWaitMs }, 'id requests still being allocated at the stop: not answered');
    },
  };
}

/** The requester's side: `n` fresh ids of a kind from a running `serve` (throws its error). */
export async function requestIds(nc: NatsConnection, kind: string, n = 1, options: { names?: Partial<IngestNames>; timeoutMs?: number } = {}): Promise<number[]> {
  const reply = await nc.request(idsSubject(resolveNames(options.names), kind), JSON.stringify({ n }), { timeout: options.timeoutMs ?? 5000 });
  const body = JSON.parse(new TextDecoder().decode(reply.data)) as IdsReply;
  if (body.error !== undefined || !Array.isArray(body.ids)) throw new Error(`id allocation for ${kind} failed: ${body.error ?? 'malformed reply'}`);
  return body.ids;
}
