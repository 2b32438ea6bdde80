import pg from 'pg';

const CHANNEL = 'event_store_appended';

export interface Wakeups {
  /** Resolves on the next append notification, after `ms`, or when `signal` aborts. */
  wait(ms: number, signal?: AbortSignal): Promise<void>;
  /** Tells every listener, in every process, that something was appended. */
  notify(): void;
  close(): Promise<void>;
}

/**
 * LISTEN/NOTIFY wake-ups for subscriptions.
 *
 * The NOTIFY is sent after the append has committed, from its own statement, never inside the
 * append: PostgreSQL serialises the commits of notifying transactions (a lock held across the
 * commit's fsync), which would undo group commit for concurrent writers. Notifications are
 * coalesced: while one is in flight, any number of appends cause at most one more.
 * Subscribers still poll on a timeout, so a lost notification (writer crashed between commit and
 * NOTIFY, listener reconnecting) delays an event, never loses it.
 */
export function createWakeups(pool: pg.Pool, connectionString: string, onError: (error: unknown) => void): Wakeups {
  const waiters = new Set<() => void>();
  let listener: pg.Client | undefined;
  let connecting: Promise<void> | undefined;
  let closed = false;
  let notifying = false;
  let notifyAgain = false;
  let notifyDone: Promise<void> = Promise.resolve();

  const wakeAll = () => {
    for (const wake of [...waiters]) wake();
  };

  const listen = (): Promise<void> => {
    connecting ??= (async () => {
      const client = new pg.Client({ connectionString });
      client.on('notification', wakeAll);
      client.on('error', (error) => {
        onError(error);
        if (listener === client) listener = undefined;
        connecting = undefined;
        wakeAll(); // let waiters re-read and re-listen
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${CHANNEL}`);
        listener = client;
      } catch (error) {
        connecting = undefined;
        onError(error);
        await client.end().catch(() => undefined);
      }
    })();
    return connecting;
  };

  const sendNotify = async () => {
    notifying = true;
    try {
      do {
        notifyAgain = false;
        await pool.query(`SELECT pg_notify('${CHANNEL}', '')`);
      } while (notifyAgain && !closed);
    } catch (error) {
      onError(error);
    } finally {
      notifying = false;
    }
  };

  return {
    async wait(ms, signal) {
      if (!closed && !listener) await listen();
      if (signal?.aborted) return;
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
      if (notifying) {
        notifyAgain = true;
        return;
      }
      notifyDone = sendNotify();
    },
    async close() {
      closed = true;
      wakeAll();
      await notifyDone;
      await connecting;
      await listener?.end().catch(() => undefined);
      listener = undefined;
    },
  };
}
