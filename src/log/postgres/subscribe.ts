import type pg from 'pg';
import { positiveInteger } from '../positive-integer.js';
import type { LogBatch, SubscribeOptions } from '../types.js';
import { readBatch, refuseForeignTransactionIds } from './read.js';
import type { RecentAppends } from './recent-appends.js';
import type { Wakeups } from './wakeups.js';

/** How long a live subscription sleeps without a notification before it looks anyway (default). */
export const DEFAULT_POLL_INTERVAL_MS = 1000;
/** Back-off while committed events wait behind a transaction still in flight. */
const HELD_BACK_DELAYS_MS = [1, 2, 5, 10, 20, 50, 100];

const DEFAULT_BATCH_SIZE = 1000;

/** Held-back rounds in a row after which a reader looks for events another server wrote (refuseForeignTransactionIds). */
const FOREIGN_CHECK_AFTER_ROUNDS = 3;

/**
 * Reads the global log in position order from `from`: all that is committed, then (when `live`)
 * whatever is appended later, until `signal` aborts. Never skips an event that commits late with a
 * lower position: read-all.sql only returns events below every transaction still in flight, and
 * when committed events wait behind such a transaction this loop waits for it rather than moving on.
 * Live, the events this process has just appended itself are taken from `recent` instead, when
 * they follow on from where the reader is (see recent-appends.ts for why that skips nothing).
 */
export async function* readLog(
  pool: pg.Pool,
  wakeups: Wakeups,
  recent: RecentAppends,
  options: SubscribeOptions & { live: boolean; pollIntervalMs?: number },
): AsyncGenerator<LogBatch> {
  // Refused at the first read: 0 read nothing and, live, waited for ever.
  const batchSize = positiveInteger('batchSize', options.batchSize ?? DEFAULT_BATCH_SIZE);
  const pollMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const { signal } = options;
  let next = options.from ?? 1;
  let heldBackRounds = 0;
  let first = true;
  /** Wake-ups that only a read of the log answers, as counted before the last read. */
  let untypedAtRead = -1;
  if (options.live) recent.subscriber(true);
  try {
    while (!signal?.aborted) {
      // Taken before the read: a wake-up during it is not missed. Held back, any append may be the
      // one in flight that it waits for; live, only its own types wake it (other processes' always).
      const seenAny = wakeups.seen();
      const seen = wakeups.seen(options.types);
      const own = options.live ? recent.take(next, batchSize, options.types) : undefined;
      if (own) {
        next = own.position + 1;
        heldBackRounds = 0;
        yield own;
        // Nothing more of its own. A wake-up that memory does not answer (another process's
        // append, one of this process's not kept) may have come since the last read, even before
        // this take (`seen` counts it already): then read the log now. So when an own event was
        // kept past a gap in the run (a position left unused, an append of other types still in
        // flight): its wake-up was counted in `seen` too, and the subscriber waited for its poll.
        // Otherwise wait, as after a read that reached the end of the log.
        if (recent.has(next) || recent.keptFrom(next)) continue;
        if (wakeups.untypedSeen() !== untypedAtRead) continue;
        await wakeups.wait(pollMs, signal, seen, options.types);
        continue;
      }
      untypedAtRead = wakeups.untypedSeen();
      const { events, head, position } = await readBatch(pool, next, batchSize, options.types);
      // A log copied from another server holds transaction ids this one has not reached, which
      // the read takes for appenders in flight: passed over once this server's own appends come
      // after them (looked at in the first batch a read yields, when it starts past where it was
      // asked to), or waited for for ever (looked at once held back a few rounds). Refused,
      // saying what to do.
      if (first && position >= next) {
        // Up to its first event, or (reading some types only) as far as it passed over others.
        const readFrom = events[0]?.globalPosition ?? position + 1;
        if (readFrom > next) await refuseForeignTransactionIds(pool, next, readFrom);
        first = false;
      }
      // Events, or (reading some types only) events of other types passed over: a batch, even an
      // empty one, so that the reader knows how far the log has been read.
      if (position >= next) {
        next = position + 1;
        heldBackRounds = 0;
        yield Object.assign(events, { position });
        if (events.length === batchSize) continue;
      }
      // Committed events past what was read: they wait behind an appender still in flight.
      if (head >= next) {
        if (heldBackRounds === FOREIGN_CHECK_AFTER_ROUNDS) await refuseForeignTransactionIds(pool, next, head + 1);
        const delay = HELD_BACK_DELAYS_MS[Math.min(heldBackRounds++, HELD_BACK_DELAYS_MS.length - 1)]!;
        await wakeups.wait(delay, signal, seenAny);
        continue;
      }
      if (!options.live) return;
      await wakeups.wait(pollMs, signal, seen, options.types);
    }
  } finally {
    if (options.live) recent.subscriber(false);
  }
}
