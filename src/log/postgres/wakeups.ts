import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { keepingOptions, LONG_LIVED_CONNECTION } from '../../db/pool.js';
import { turnOffTimeouts } from '../../db/session-timeouts.js';
import { destroyClient, endWithin } from '../../db/end-client.js';

const CHANNEL = 'event_store_appended';

/** The least time between two NOTIFYs of one event log (its other processes' extra wake-up latency). */
export const DEFAULT_NOTIFY_INTERVAL_MS = 5;

/**
 * The advisory lock (key pair) that every listener of the channel holds, shared, on its listening
 * connection for as long as it listens: an appender that can take it exclusively knows that no
 * other session listens, and sends no notification.
 */
export const LISTENER_LOCK = [7407, 0] as const;

/** How often an appending process looks again whether another session listens. */
export const LISTENERS_CHECK_MS = 1000;

/** A notification an append sends from its own transaction: `pg_notify(channel, payload)` at commit. */
export interface Notification {
  readonly channel: string;
  readonly payload: string;
  /** How many appends without a notification of their own had committed when it was handed out: the ones it tells of. */
  readonly covers: number;
}

/** What became of an append, for `Wakeups.appended`. */
export interface AppendOutcome {
  /** It wrote events (not only duplicates). */
  wrote: boolean;
  /** The types of its events: only this process's subscribers to one of them are woken. Undefined: all are. */
  types?: Iterable<string> | undefined;
  /** The notification `due()` gave it, if any. */
  notification?: Notification | undefined;
  /** Its statement committed with the notification in it (it returned rows). */
  sent?: boolean;
}

export interface Wakeups {
  /**
   * How many wake-ups there have been for a subscriber to `types` (all types if undefined): take
   * it before reading, and pass it to `wait`.
   */
  seen(types?: readonly string[]): number;
  /**
   * How many wake-ups there have been that say nothing of types: other processes' notifications,
   * a lost listener, and this process's appends reported without types (recent-appends.ts: those
   * it did not keep). Only a read of the log answers them.
   */
  untypedSeen(): number;
  /**
   * Resolves on the next append notification for `types` (any type if undefined), after `ms`, or
   * when `signal` aborts; at once if there has been such a wake-up since `since` (one that came
   * while the caller was reading, which would otherwise be missed until the next poll).
   */
  wait(ms: number, signal?: AbortSignal, since?: number, types?: readonly string[]): Promise<void>;
  /**
   * The notification the next append should carry in its statement, when one is due; undefined
   * when one went out recently. Whatever the append's fate, report it to `appended`.
   */
  due(): Notification | undefined;
  /**
   * After an append (or its failure): wakes this process's subscribers to its types at once if it
   * wrote, and makes sure every other process hears of it, from its own statement or from a NOTIFY
   * at most about `intervalMs` later.
   */
  appended(outcome: AppendOutcome): void;
  /** Whether another session listens, as of the last check (true until one has answered). */
  othersListen(): boolean;
  close(): Promise<void>;
}

/**
 * An append takes the notification when this share of the interval has passed since the last one:
 * a little before a separate NOTIFY would be due, so that in a steady stream of appends the
 * appends carry every notification and the separate NOTIFY is only needed after the last one.
 */
export const CARRY_AFTER_SHARE = 0.8;

/**
 * How often the listening connection is asked `SELECT 1`, and how long the answer may take. A
 * connection cut without a word (a network partition, a failover to another address) raises no
 * error: its LISTEN hears nothing more, and the queries this process sends on it (the listener
 * check, its NOTIFYs) wait for ever, leaving every process to its 1 s poll. An unanswered probe
 * drops the connection, and the next wait listens again.
 */
export const LISTENER_PROBE_MS = 30_000;

/** The least time the listener's set-up queries may take (a short probe interval must not fail them on a busy server). */
const LISTENER_SETUP_MIN_MS = 5_000;

/**
 * LISTEN/NOTIFY wake-ups for subscriptions.
 *
 * Appends carry the notification in their own statement (`pg_notify`, delivered when the append
 * commits), at most one every `intervalMs`; the appends in between are told of by the next
 * carrying append or, when none comes within the interval (or it fails, or it is still running),
 * by a NOTIFY of its own. Only a few appends carry one because PostgreSQL serialises the commits of
 * notifying transactions (a lock held across the commit's fsync): one per append would undo group
 * commit for concurrent writers. Carrying it costs almost nothing, where a NOTIFY of its own is a
 * transaction more: at one per 5 ms, those took about 4 % of a sequential appender's rate. Other
 * processes hear of an append at most about `intervalMs` after it committed: an append left
 * untold that long (no carrying append came, or it failed, or it is slow to commit) gets a NOTIFY
 * of its own, which tells of every append before it. Subscribers still poll on a timeout,
 * so a lost notification (writer crashed before its NOTIFY, listener reconnecting) delays an
 * event, never loses it. While no other session listens (LISTENER_LOCK, checked at most every
 * LISTENERS_CHECK_MS), no notification is carried or sent at all.
 *
 * Subscribers of this process are woken directly, without the round trip through PostgreSQL (serve
 * appends and projects in one process), and only by appends of a type they read: a projection
 * group that handles a few types (namespace_usage) no longer reads the log after every append of a
 * channel sync; the events it passes over are read with its next event or at its safety poll.
 * A notification from another process says nothing of types and wakes every subscriber. Every
 * notification of this process carries its own random payload, so that their echo on this
 * process's listening connection is told apart and does not wake its subscribers a second time.
 */
export function createWakeups(
  pool: pg.Pool,
  connectionString: string,
  onError: (error: unknown) => void,
  intervalMs = DEFAULT_NOTIFY_INTERVAL_MS,
  probeMs = LISTENER_PROBE_MS,
): Wakeups {
  const payload = randomUUID();
  const waiters = new Set<{ types: readonly string[] | undefined; done: () => void }>();
  let listener: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let closed = false;
  let notifying = false;
  let notifyDone: Promise<void> = Promise.resolve();
  // When the last notification was sent or handed to an append.
  let lastNotification = -Infinity;
  // Appends that wrote without carrying a notification, how many of them one has told of, and
  // when each of the others committed (oldest first): each must be told within an interval.
  let uncarried = 0;
  let told = 0;
  const untold: { count: number; at: number }[] = [];
  const tell = (count: number) => {
    told = Math.max(told, count);
    while (untold.length && untold[0]!.count <= told) untold.shift();
  };

  // Wake-ups counted so that a subscriber to some types can tell whether one of its own came:
  // those of this process's appends per type, those whose types are not known (other processes,
  // a lost listener) apart.
  let wakeups = 0;
  let untyped = 0;
  const byType = new Map<string, number>();
  const seen = (types?: readonly string[]) =>
    types ? types.reduce((sum, type) => sum + (byType.get(type) ?? 0), untyped) : wakeups;
  const wake = (types?: Iterable<string>) => {
    wakeups++;
    const woken = types ? new Set(types) : undefined;
    if (woken) for (const type of woken) byType.set(type, (byType.get(type) ?? 0) + 1);
    else untyped++;
    if (waiters.size === 0) return;
    const due = [...waiters].filter((waiter) => !woken || !waiter.types || waiter.types.some((type) => woken.has(type)));
    // The counts above change now (a subscriber about to wait sees them and does not wait); the
    // waiters resume on the next turn of the event loop: the appender that woke them goes on
    // first (serve's ingester sends its next append before the projector parses what it takes),
    // so PostgreSQL works on that append meanwhile instead of waiting for the projector.
    if (due.length) setImmediate(() => due.forEach((waiter) => waiter.done()));
  };

  // Every listening client made and not ended yet: close() ends them all.
  const clients = new Set<pg.Client>();
  const listen = (): Promise<void> => {
    if (connecting) return connecting;
    const attempt: Promise<void> = (async () => {
      // Every query on it answered in time, its set-up too: a connection that goes silent after
      // the connect (which connectionTimeoutMillis bounds) and before LISTEN returns held this
      // attempt until TCP gave up, a quarter of an hour, with no probe in place yet.
      const client = new pg.Client(keepingOptions({ connectionString, ...LONG_LIVED_CONNECTION, query_timeout: Math.max(probeMs, LISTENER_SETUP_MIN_MS) }));
      clients.add(client);
      let lost = false;
      let probe: NodeJS.Timeout | undefined;
      const forget = () => {
        clearInterval(probe);
        clients.delete(client);
        if (listener === client) listener = undefined;
        // Only this attempt's own: a later one may be connecting already.
        if (connecting === attempt) connecting = undefined;
      };
      const end = () => {
        forget();
        return client.end().catch(() => undefined);
      };
      // Lost: dropped at once, its socket destroyed (a polite end waits for an answer that, on a
      // silent connection, never comes), and the waiters re-read and re-listen.
      const lose = (error: unknown) => {
        // node-postgres reports a terminated backend twice (its FATAL, then the closed socket):
        // handled once, or the second report would throw away the next attempt, already under
        // way, and a third would start beside it, never to be closed.
        if (lost) return;
        lost = true;
        onError(error);
        forget();
        destroyClient(client);
        wake();
      };
      client.on('notification', (message) => {
        if (message.payload !== payload) wake();
      });
      client.on('error', lose);
      try {
        await client.connect();
        await turnOffTimeouts(client, ['idle_session_timeout']);
        await client.query(`LISTEN ${CHANNEL}; SELECT pg_advisory_lock_shared(${LISTENER_LOCK.join(', ')})`);
        if (lost || closed) return void (await end());
        listener = client;
        let probing = false;
        probe = setInterval(() => {
          // Closed: close() ends the client, and a probe of it would report a lost connection.
          if (closed) return void clearInterval(probe);
          if (probing) return;
          probing = true;
          // query_timeout per query: node-postgres takes it (its types only know it per client).
          client
            .query({ text: 'SELECT 1', query_timeout: probeMs } as pg.QueryConfig)
            // A probe in flight when the log closed fails with the connection close() ended.
            .catch((error: unknown) => closed || lose(new Error(`the listening connection did not answer within ${probeMs} ms: dropped`, { cause: error })))
            .finally(() => (probing = false));
        }, probeMs).unref();
        // Appends that committed while the listener was being set up were told to nobody here:
        // the waiters read once more.
        wake();
      } catch (error) {
        if (!lost) onError(error);
        lost = true;
        // Not ended politely: on a silent connection the end waits for an answer that never comes.
        forget();
        destroyClient(client);
      }
    })();
    connecting = attempt;
    return attempt;
  };

  /**
   * listen(), or less if `signal` aborts first or `ms` pass (a connection that hangs holds no one
   * up: a subscriber reads the log every `ms` meanwhile, as it would poll).
   */
  const listening = (signal: AbortSignal | undefined, ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      if (signal?.aborted) return resolve();
      const timer = setTimeout(done, ms);
      signal?.addEventListener('abort', done, { once: true });
      void listen().then(done);
    });

  // Whether another session listens: unknown counts as yes, and so does a check that failed.
  let othersListen = true;
  let listenersCheckedAt = -Infinity;
  let checkingListeners = false;
  const checkListeners = () => {
    const now = performance.now();
    if (checkingListeners || closed || now - listenersCheckedAt < LISTENERS_CHECK_MS) return;
    checkingListeners = true;
    listenersCheckedAt = now;
    // Asked on this process's own listening connection when it has one: a session's own shared
    // lock does not stand in the way of its exclusive request, so only other listeners count.
    // A listener being connected holds the lock before this process has its answer: asked on the
    // pool then, its lock counted as another's, so the check waits for it (listen() never rejects).
    // Taken for the statement's transaction only, and never waited for.
    void (connecting ?? Promise.resolve())
      .then(() => (listener ?? pool).query<{ alone: boolean }>(`SELECT pg_try_advisory_xact_lock(${LISTENER_LOCK.join(', ')}) AS alone`))
      .then(({ rows }) => (othersListen = !rows[0]!.alone), () => (othersListen = true))
      .finally(() => (checkingListeners = false));
  };

  let cutWait: (() => void) | undefined;
  const sendNotify = async () => {
    notifying = true;
    try {
      while (told < uncarried) {
        // Due an interval after the oldest append still untold committed: a carrying append
        // (claimed every 80 % of an interval) usually tells of it before; one that is slow to
        // commit does not hold this back.
        const wait = closed ? 0 : untold[0]!.at + intervalMs - performance.now();
        if (wait > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait);
            cutWait = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          cutWait = undefined;
          continue;
        }
        const tells = uncarried;
        lastNotification = performance.now();
        // Its own transaction needs no WAL flush: a notification is not durable anyway, and the
        // appends it announces have committed already.
        await (listener ?? pool).query(`SET LOCAL synchronous_commit TO off; SELECT pg_notify('${CHANNEL}', '${payload}')`);
        tell(tells);
      }
    } catch (error) {
      // Dropped, not retried now: the database may be down. The next append tries again, and
      // other processes' subscribers look every second anyway.
      onError(error);
    } finally {
      notifying = false;
    }
  };

  return {
    seen,
    untypedSeen: () => untyped,
    othersListen: () => othersListen,
    async wait(ms, signal, since, types) {
      const until = performance.now() + ms;
      if (!closed && !listener) await listening(signal, ms);
      const left = until - performance.now();
      if (signal?.aborted || left <= 0 || (since !== undefined && since !== seen(types))) return;
      await new Promise<void>((resolve) => {
        const waiter = {
          types,
          done: () => {
            clearTimeout(timer);
            waiters.delete(waiter);
            signal?.removeEventListener('abort', waiter.done);
            resolve();
          },
        };
        const timer = setTimeout(waiter.done, left);
        waiters.add(waiter);
        signal?.addEventListener('abort', waiter.done, { once: true });
      });
    },
    due() {
      checkListeners();
      if (!othersListen) return undefined;
      const now = performance.now();
      if (closed || now - lastNotification < intervalMs * CARRY_AFTER_SHARE) return undefined;
      lastNotification = now;
      return { channel: CHANNEL, payload, covers: uncarried };
    },
    appended({ wrote, types, notification, sent = false }) {
      if (wrote) wake(types);
      if (notification && sent) tell(notification.covers);
      // Nobody else listens (as of the last check): nothing to tell. A listener that came since
      // hears of appends from the next check on, and reads what it missed at its next poll.
      else if (wrote && othersListen) untold.push({ count: ++uncarried, at: performance.now() });
      // Also after a failed carrying append: the appends it was to tell of are still untold.
      if (told < uncarried && !notifying && !closed) notifyDone = sendNotify();
    },
    async close() {
      closed = true;
      wake();
      if (told < uncarried && !notifying) notifyDone = sendNotify();
      cutWait?.(); // the last NOTIFY goes out now rather than at the end of its interval
      await notifyDone;
      await connecting;
      await Promise.all([...clients].map((client) => endWithin(client, probeMs)));
      clients.clear();
      listener = undefined;
    },
  };
}
