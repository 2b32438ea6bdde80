import type pg from 'pg';
import { createKeptConnection } from '../../db/kept-connection.js';
import { createPool, READ_COMMITTED } from '../../db/pool.js';
import type { AppendedEvent, AppendOptions, AppendRequest, EventLog } from '../types.js';
import { append, appendToStreams, eventJson, takesFastPath } from './append.js';
import { createAppendQueue, type AppendQueueOptions, type AppendQueueStats } from './append-queue.js';
import { raiseFence } from './fences.js';
import { allocateIds, reserveIds } from './ids.js';
import { headPosition, readStream } from './read.js';
import { createRecentAppends, type RecentAppendsOptions } from './recent-appends.js';
import { createStreamVersions, DEFAULT_KNOWN_STREAMS } from './stream-versions.js';
import { readLog } from './subscribe.js';
import { createWakeups } from './wakeups.js';
import { takeRequests } from '../append-requests.js';
import { positiveInteger } from '../positive-integer.js';
import { EventLogClosedError, WrongExpectedVersionError } from '../errors.js';

export interface PostgresEventLogOptions {
  connectionString: string;
  /** Connections in the pool (appends, reads); default 10. One more is kept out of it between appends (kept-connection.ts). */
  poolSize?: number;
  /** How long a connection may stay unused before it is closed (default 10,000 ms): the pool's, and the one kept for appends. */
  idleTimeoutMs?: number;
  /**
   * The least time between two NOTIFYs that tell other processes of appends (default 5 ms): how
   * late, at most, their subscribers hear of an append. This process's own hear at once.
   */
  notifyIntervalMs?: number;
  /** Called with errors that are not thrown to a caller (listener connection lost, NOTIFY failed). */
  onError?: (error: unknown) => void;
  /** How long a live subscription waits without a notification before it reads the log anyway; default 1,000 ms. */
  pollIntervalMs?: number;
  /** How many of its own appended events, and how much of their JSON, the log keeps for this process's live subscribers (recent-appends.ts). */
  keepOwnAppends?: RecentAppendsOptions;
  /** How concurrent single-stream appends share statements (append-queue.ts). */
  appendQueue?: AppendQueueOptions;
  /**
   * How many streams' versions the log remembers (default 10,000): an append to one of them that
   * expects the version it was last seen at skips the version lookup (stream-versions.ts).
   */
  knownStreams?: number;
}

/** pg-pool's own default. */
const DEFAULT_IDLE_TIMEOUT_MS = 10_000;
const MAX_TIMER_MS = 2 ** 31 - 1;


/** The PostgreSQL backend of the event log (schema `event_store`, created by the Knex migrations). */
export function createPostgresEventLog(options: PostgresEventLogOptions): EventLog & { pool: pg.Pool; ownAppendsTaken(): number; appendQueueStats(): AppendQueueStats; knownStreams(): number } {
  const versions = createStreamVersions(options.knownStreams ?? DEFAULT_KNOWN_STREAMS);
  const recent = createRecentAppends(options.keepOwnAppends);
  const reportError = options.onError ?? (() => undefined);
  // A lost connection may be a server going back to a backup, or a replica taking over behind
  // the versions seen and the events kept for subscribers; so may a new one (the pool closes idle
  // connections, and a process idle through a restore hears of no error): both make the log
  // forget them (stream-versions.ts, recent-appends.ts). Kept events handed over after that would
  // be events the server no longer has, and a projection past them would skip the events that
  // take their positions again.
  const forget = () => {
    versions.clear();
    recent.clear();
  };
  const onError = (error: unknown) => {
    forget();
    reportError(error);
  };
  // append_events() decides under its stream locks, on what committed while it waited for them:
  // READ COMMITTED, whatever the database's default. Under REPEATABLE READ its snapshot predates
  // the wait, and it decided on the log as it was before the appender it waited for (a purge
  // accepted beside an environment that had just come in; a version taken, seen as free).
  const poolSize = positiveInteger('poolSize', options.poolSize ?? 10);
  const idleTimeoutMs = positiveInteger('idleTimeoutMs', options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS);
  // A timer's longest delay: Node.js runs a longer one after 1 ms (the kept connection's idle check would spin).
  if (idleTimeoutMs > MAX_TIMER_MS) throw new RangeError(`idleTimeoutMs must be at most ${MAX_TIMER_MS}, got ${idleTimeoutMs}`);
  const pool = createPool({ connectionString: options.connectionString, max: poolSize + 1, idleTimeoutMillis: idleTimeoutMs, options: READ_COMMITTED, onError });
  pool.on('connect', forget);
  // Appends take the connection the last one gave back, without pg-pool's checkout.
  const connections = createKeptConnection(pool, { idleMs: idleTimeoutMs });
  const wakeups = createWakeups(pool, options.connectionString, onError, options.notifyIntervalMs);
  const queue = createAppendQueue({
    one: (fast) => append(connections, [fast.request], { notification: fast.notification, json: fast.json, versions }),
    several: (appends) => appendToStreams(connections, appends),
    // A waiting append's JSON is made when it is called, as for one that goes at once: the caller
    // may change its objects once it has called.
    prepare: (fast) => (fast.json ? fast : { ...fast, json: eventJson([fast.request]) }),
  }, options.appendQueue);
  let closing: Promise<void> | undefined;
  // Appends that went by append_events() (keys, preconditions, several streams), not the queue:
  // close() waits for them too. One still waiting for a connection when the pool ended would never
  // get one (pg-pool serves no waiter once it ends), and its caller would wait for ever.
  // Awaited here before anything else reacts to it: a second reaction on the append's promise
  // (a .then to forget it) cut the async stack trace of its errors at the statement.
  const outsideQueue = new Set<Promise<unknown>>();
  const outside = async <T>(promise: Promise<T>): Promise<T> => {
    outsideQueue.add(promise);
    try {
      return await promise;
    } finally {
      outsideQueue.delete(promise);
    }
  };
  // The version each request's stream reached: its last event's (a duplicate's is an older one).
  const seen = (requests: readonly AppendRequest[], appended: readonly AppendedEvent[]) => {
    let index = 0;
    for (const request of requests) {
      index += request.events.length;
      const last = appended[index - 1];
      if (request.events.length > 0 && last) versions.reached(request.stream, last.streamVersion);
    }
  };

  return {
    pool,
    /** Batches that live subscribers took from this process's own appends instead of reading the log. */
    ownAppendsTaken: () => recent.taken(),
    /** Appends that waited for a statement, and those that shared one with others (append-queue.ts). */
    appendQueueStats: () => queue.stats(),
    /** How many streams' versions the log remembers (stream-versions.ts). */
    knownStreams: () => versions.size,
    async append(requests: AppendRequest | AppendRequest[], appendOptions: AppendOptions = {}) {
      if (closing) throw new EventLogClosedError();
      const list = takeRequests(requests);
      const nonEmpty = list.filter((request) => request.events.length > 0);
      // Only an append that will run a statement takes the notification (an empty one would spend it).
      const notification = nonEmpty.length > 0 ? wakeups.due() : undefined;
      let appended: AppendedEvent[] = [];
      let kept = false;
      try {
        // The events' JSON once, for the statement and for this process's live subscribers, if any.
        const json = recent.keeping() ? eventJson(list) : undefined;
        // One stream, nothing but events: through the queue, which writes concurrent ones together
        // (unfenced: a fence is checked in its append's own transaction, append.ts).
        const { fence } = appendOptions;
        appended = !fence && takesFastPath(nonEmpty) ? await queue.append({ request: nonEmpty[0], notification, json }) : await outside(append(connections, list, { notification, json, fence, versions }));
        seen(list, appended);
        // Kept before the wake-up below, which sends this process's subscribers to take them.
        kept = json !== undefined && recent.add(appended, list, json);
        return appended;
      } catch (error) {
        // The stream's real version, when the append was of that stream alone: with earlier
        // requests of the same stream in the call, the version reported counts their events,
        // which were rolled back with the rest.
        if (error instanceof WrongExpectedVersionError && typeof error.actual === 'number' && list.length === 1) versions.reached(error.stream, error.actual);
        throw error;
      } finally {
        // A wake-up by type tells subscribers the events are in memory; one not kept wakes them
        // without types, which sends them to read the log (subscribe.ts).
        const types = kept ? list.flatMap((request) => request.events.map((event) => event.type)) : undefined;
        wakeups.appended({ wrote: appended.some((event) => !event.duplicate), types, notification, sent: appended.length > 0 });
      }
    },
    readStream: (stream, readOptions) => readStream(pool, stream, readOptions),
    readAll: (readOptions = {}) => readLog(pool, wakeups, recent, { ...readOptions, live: false }),
    subscribe: (subscribeOptions = {}) => readLog(pool, wakeups, recent, { ...subscribeOptions, live: true, pollIntervalMs: options.pollIntervalMs }),
    raiseFence: (name) => raiseFence(pool, name),
    headPosition: () => headPosition(pool),
    allocateIds: (kind, n) => allocateIds(pool, kind, n),
    reserveIds: (kind, through) => reserveIds(pool, kind, through),
    close() {
      // Once, whoever calls it again (a shutdown path and a teardown both may).
      closing ??= (async () => {
        // Appends waiting in the queue are written first, and those in flight beside it end: each
        // was taken, and its caller waits.
        await queue.close();
        await Promise.allSettled([...outsideQueue]);
        await wakeups.close();
        connections.close();
        await pool.end();
      })();
      return closing;
    },
  };
}
