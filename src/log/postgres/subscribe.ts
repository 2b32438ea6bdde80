import type pg from 'pg';
import type { LogBatch, SubscribeOptions } from '../types.js';
import { readBatch } from './read.js';
import type { RecentAppends } from './recent-appends.js';
import type { Wakeups } from './wakeups.js';

/** How long a live subscription sleeps without a notification before it looks anyway. */
const SAFETY_POLL_MS = 1000;
/** Back-off while committed events wait behind a transaction still in flight. */
const HELD_BACK_DELAYS_MS = [1, 2, 5, 10, 20, 50, 100];

const DEFAULT_BATCH_SIZE = 1000;

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
  options: SubscribeOptions & { live: boolean },
): AsyncGenerator<LogBatch> {
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const { signal } = options;
  let next = options.from ?? 1;
  let heldBackRounds = 0;
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
        // Nothing more of its own: wait, as after a read that reached the end of the log. Another
        // process's append wakes every subscriber, and the next read of the log finds it.
        if (!recent.has(next)) await wakeups.wait(SAFETY_POLL_MS, signal, seen, options.types);
        continue;
      }
      const { events, head, position } = await readBatch(pool, next, batchSize, options.types);
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
        const delay = HELD_BACK_DELAYS_MS[Math.min(heldBackRounds++, HELD_BACK_DELAYS_MS.length - 1)]!;
        await wakeups.wait(delay, signal, seenAny);
        continue;
      }
      if (!options.live) return;
      await wakeups.wait(SAFETY_POLL_MS, signal, seen, options.types);
    }
  } finally {
    if (options.live) recent.subscriber(false);
  }
}
