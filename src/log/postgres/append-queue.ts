import type { AppendedEvent } from '../types.js';
import type { FastAppend } from './append.js';

export interface AppendQueueOptions {
  /**
   * How many statements of single-stream appends run at once (default 2). Appends that come while
   * that many run wait, and go together in one statement when one ends.
   */
  statements?: number;
  /** The most events one statement carries for the appends that waited (default 1,000). */
  maxEvents?: number;
}

export const DEFAULT_APPEND_STATEMENTS = 2;
export const DEFAULT_MAX_QUEUED_EVENTS = 1000;

/** How the queue writes: one append, or several in one statement (undefined: it wrote nothing). */
export interface AppendWriter {
  one(append: FastAppend): Promise<AppendedEvent[]>;
  several(appends: readonly FastAppend[]): Promise<AppendedEvent[][] | undefined>;
}

export interface AppendQueueStats {
  waited: number;
  together: number;
}

type Settled = { appended: AppendedEvent[] } | { error: unknown };

interface Waiting extends FastAppend {
  resolve(appended: AppendedEvent[]): void;
  reject(error: unknown): void;
}

/**
 * Concurrent single-stream appends of one process, written together. A commit costs the same
 * for one event as for a hundred (its WAL flush, its round trip, the statement's locks and
 * plan), and on a server with few cores concurrent appends compete for CPU rather than wait for
 * the disk: so no more than `statements` of them run at once, and those that come meanwhile wait
 * and then go in one statement and one commit, each still atomic, with its own expected version.
 * The first append of a quiet moment goes at once: a lone appender waits for nothing.
 *
 * Nothing is refused for being in company: when the shared statement writes nothing (an expected
 * version that does not hold, an event id already in the log, a version taken in between) or
 * fails, each append goes on its own and gets its own result or error. A statement never holds
 * the same stream twice, so the appends of one stream keep the order they came in.
 */
export function createAppendQueue(writer: AppendWriter, options: AppendQueueOptions = {}) {
  const statements = Math.max(1, options.statements ?? DEFAULT_APPEND_STATEMENTS);
  const maxEvents = Math.max(1, options.maxEvents ?? DEFAULT_MAX_QUEUED_EVENTS);
  const waiting: Waiting[] = [];
  let running = 0;
  let together = 0;
  let waited = 0;

  /** The waiting appends the next statement takes: first come first, no stream twice, up to maxEvents. */
  const takeBatch = (): Waiting[] => {
    const batch: Waiting[] = [];
    const streams = new Set<string>();
    let events = 0;
    for (let i = 0; i < waiting.length; ) {
      const next = waiting[i]!;
      const size = next.request.events.length;
      if (streams.has(next.request.stream) || (batch.length > 0 && events + size > maxEvents)) {
        i++;
        continue;
      }
      waiting.splice(i, 1);
      batch.push(next);
      streams.add(next.request.stream);
      events += size;
    }
    return batch;
  };

  const alone = (append: Waiting): Promise<Settled> => writer.one(append).then((appended) => ({ appended }), (error: unknown) => ({ error }));

  const write = async (batch: Waiting[]): Promise<Settled[]> => {
    if (batch.length === 1) return [await alone(batch[0]!)];
    const results = await writer.several(batch).catch(() => undefined);
    if (!results) return Promise.all(batch.map(alone));
    together += batch.length;
    return results.map((appended) => ({ appended }));
  };

  const pump = () => {
    while (running < statements && waiting.length > 0) {
      running++;
      const batch = takeBatch();
      void write(batch).then((settled) => {
        // The slot is free before the callers hear: an appender's next append, made as soon as
        // it hears, finds it free and goes at once instead of waiting for a statement to end.
        running--;
        pump();
        settled.forEach((outcome, i) => ('error' in outcome ? batch[i]!.reject(outcome.error) : batch[i]!.resolve(outcome.appended)));
      });
    }
  };

  return {
    append(append: FastAppend): Promise<AppendedEvent[]> {
      if (running < statements && waiting.length === 0) {
        // A slot is free: the append goes at once, with nothing of the queue's bookkeeping.
        running++;
        const free = () => {
          running--;
          pump();
        };
        return writer.one(append).then((appended) => (free(), appended), (error: unknown) => (free(), Promise.reject(error)));
      }
      waited++;
      return new Promise((resolve, reject) => {
        waiting.push({ ...append, resolve, reject });
        pump();
      });
    },
    /** Appends that waited for a statement, and those written in a statement shared with others (figures for tests and diagnostics). */
    stats: (): AppendQueueStats => ({ waited, together }),
  };
}
