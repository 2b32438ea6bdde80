import pg from 'pg';

const CHANNEL = 'event_store_appended';

/** The least time between two NOTIFYs of one event log (its other processes' extra wake-up latency). */
export const DEFAULT_NOTIFY_INTERVAL_MS = 5;

export interface Wakeups {
  /** How many wake-ups there have been: take it before reading, and pass it to `wait`. */
  seen(): number;
  /**
   * Resolves on the next append notification, after `ms`, or when `signal` aborts; at once if
   * there has been a wake-up since `since` (one that came while the caller was reading, which
   * would otherwise be missed until the next poll).
   */
  wait(ms: number, signal?: AbortSignal, since?: number): Promise<void>;
  /** Tells every listener, in this process at once and in every other one, that something was appended. */
  notify(): void;
  close(): Promise<void>;
}

/**
 * LISTEN/NOTIFY wake-ups for subscriptions.
 *
 * The NOTIFY is sent after the append has committed, from its own statement, never inside the
 * append: PostgreSQL serialises the commits of notifying transactions (a lock held across the
 * commit's fsync), which would undo group commit for concurrent writers. Notifications are
 * coalesced and spaced: at most one every `intervalMs`; the appends in between cause one more at
 * the end of the interval. A NOTIFY is a transaction of its own, and one per append made 8
 * concurrent writers a third slower; other processes hear of an append at most `intervalMs` late.
 * Subscribers still poll on a timeout, so a lost notification (writer crashed between commit and
 * NOTIFY, listener reconnecting) delays an event, never loses it.
 *
 * Subscribers of this process are woken directly, without the round trip through PostgreSQL (serve
 * appends and projects in one process). The NOTIFY for the others goes out on the listening
 * connection, so that its echo, which carries that connection's process id, can be told apart and
 * does not wake this process's subscribers a second time for nothing.
 */
export function createWakeups(pool: pg.Pool, connectionString: string, onError: (error: unknown) => void, intervalMs = DEFAULT_NOTIFY_INTERVAL_MS): Wakeups {
  const waiters = new Set<() => void>();
  let listener: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let closed = false;
  let notifying = false;
  let notifyAgain = false;
  let notifyDone: Promise<void> = Promise.resolve();
  let lastNotify = -Infinity;

  let wakeups = 0;
  const wakeAll = () => {
    wakeups++;
    for (const wake of [...waiters]) wake();
  };

  const listen = (): Promise<void> => {
    connecting ??= (async () => {
      const client = new pg.Client({ connectionString });
      let ownPid: number | undefined;
      client.on('notification', (message) => {
        if (message.processId !== ownPid) wakeAll();
      });
      client.on('error', (error) => {
        onError(error);
        if (listener === client) listener = undefined;
        connecting = undefined;
        wakeAll(); // let waiters re-read and re-listen
      });
      try {
        await client.connect();
        const results = (await client.query(`LISTEN ${CHANNEL}; SELECT pg_backend_pid() AS pid`)) as unknown as pg.QueryResult<{ pid: number }>[];
        ownPid = results[1]!.rows[0]!.pid;
        listener = client;
      } catch (error) {
        connecting = undefined;
        onError(error);
        await client.end().catch(() => undefined);
      }
    })();
    return connecting;
  };

  let cutWait: (() => void) | undefined;
  const sendNotify = async () => {
    notifying = true;
    try {
      do {
        const wait = closed ? 0 : lastNotify + intervalMs - performance.now();
        if (wait > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, wait);
            cutWait = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          cutWait = undefined;
        }
        // Cleared after the wait: the appends made during it are announced by this NOTIFY.
        notifyAgain = false;
        lastNotify = performance.now();
        // Its own transaction needs no WAL flush: a notification is not durable anyway, and the
        // append it announces has committed already.
        await (listener ?? pool).query(`SET LOCAL synchronous_commit TO off; SELECT pg_notify('${CHANNEL}', '')`);
        // Appends made while it was sent get one more, also when closing (close() waits for it).
      } while (notifyAgain);
    } catch (error) {
      // Dropped, not retried: the database may be down. The next append notifies again, and
      // other processes' subscribers look every second anyway.
      onError(error);
    } finally {
      notifying = false;
    }
  };

  return {
    seen: () => wakeups,
    async wait(ms, signal, since) {
      if (!closed && !listener) await listen();
      if (signal?.aborted || (since !== undefined && since !== wakeups)) return;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, ms);
        waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    },
    notify() {
      if (closed) return;
      wakeAll();
      if (notifying) {
        notifyAgain = true;
        return;
      }
      notifyDone = sendNotify();
    },
    async close() {
      closed = true;
      wakeAll();
      cutWait?.(); // the last NOTIFY goes out now rather than at the end of its interval
      await notifyDone;
      await connecting;
      await listener?.end().catch(() => undefined);
      listener = undefined;
    },
  };
}
