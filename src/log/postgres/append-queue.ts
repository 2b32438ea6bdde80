import type { AppendedEvent } from '../types.js';
import type { FastAppend } from './append.js';
import { positiveInteger } from '../positive-integer.js';
import { EventLogClosedError } from '../errors.js';

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

/** How the queue writes. */
export interface AppendWriter {
  /** One append on its own: its result or its error. */
  one(append: FastAppend): Promise<AppendedEvent[]>;
  /**
   * Several appends of distinct streams in one statement: each one's result, in order; undefined
   * when the database wrote nothing (each must then go on its own, which decides and explains);
   * an error when the outcome is unknown (a lost connection), which every caller then gets.
   */
  several(appends: readonly FastAppend[]): Promise<AppendedEvent[][] | undefined>;
  /** Called for an append that is going to wait: what it holds must not change meanwhile (its JSON made now). */
  prepare?(append: FastAppend): FastAppend;
}

export interface AppendQueueStats {
  /** Appends that waited for a statement. */
  waited: number;
  /** Appends written in a statement shared with others. */
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
 * The first append of a quiet moment goes at once: a lone appender waits for nothing. Appenders in
 * step (each appends again as soon as it hears) are kept together: the callers of a shared
 * statement that ended come back in the same turn of the event loop and go together again, and a
 * statement takes only its fair share of the appends waiting and in flight, so that with two
 * statements and eight writers each carries four (not one, one and six, which left most
 * statements nearly empty: 5,200 against 6,500 appends/s in a scratch run on two cores).
 *
 * Nothing is refused for being in company: when the shared statement writes nothing (an expected
 * version that does not hold, an event id already in the log, a version taken in between), each
 * append goes on its own, one after the other, and gets its own result or error. The appends of
 * one stream keep the order they came in: a stream is in one statement at a time, and an append
 * waits behind an earlier one of its stream (in flight, or waiting and passed over).
 */
export function createAppendQueue(writer: AppendWriter, options: AppendQueueOptions = {}) {
  const statements = positiveInteger('appendQueue.statements', options.statements ?? DEFAULT_APPEND_STATEMENTS);
  const maxEvents = positiveInteger('appendQueue.maxEvents', options.maxEvents ?? DEFAULT_MAX_QUEUED_EVENTS);
  const waiting: Waiting[] = [];
  const inFlight = new Set<string>();
  const drained: (() => void)[] = [];
  let running = 0;
  let together = 0;
  let waited = 0;
  let closed = false;

  /**
   * The waiting appends the next statement takes: first come first, up to maxEvents, no stream
   * twice, none of a stream in flight or passed over (a later append of it must not overtake).
   */
  const takeBatch = (most: number): Waiting[] => {
    const batch: Waiting[] = [];
    const seen = new Set<string>();
    let events = 0;
    for (let i = 0; i < waiting.length && batch.length < most; ) {
      const next = waiting[i]!;
      const { stream } = next.request;
      const blocked = seen.has(stream) || inFlight.has(stream) || (batch.length > 0 && events + next.request.events.length > maxEvents);
      seen.add(stream);
      if (blocked) {
        i++;
        continue;
      }
      waiting.splice(i, 1);
      batch.push(next);
      events += next.request.events.length;
    }
    return batch;
  };

  // A writer that throws synchronously still settles its append (and frees its slot).
  const one = (append: FastAppend): Promise<AppendedEvent[]> => {
    try {
      return Promise.resolve(writer.one(append));
    } catch (error) {
      return Promise.reject(error);
    }
  };
  const alone = (append: FastAppend): Promise<Settled> => one(append).then((appended) => ({ appended }), (error: unknown) => ({ error }));

  const write = async (batch: readonly FastAppend[]): Promise<Settled[]> => {
    if (batch.length === 1) return [await alone(batch[0]!)];
    let results: AppendedEvent[][] | undefined;
    try {
      results = await writer.several(batch);
    } catch (error) {
      return batch.map(() => ({ error }));
    }
    if (results) {
      together += batch.length;
      return results.map((appended) => ({ appended }));
    }
    // One after the other, within this statement's slot: under contention a whole batch may come
    // here, and it must not take more of the server than the slot it had.
    const settled: Settled[] = [];
    for (const append of batch) settled.push(await alone(append));
    return settled;
  };

  const start = (batch: readonly FastAppend[]) => {
    running++;
    for (const append of batch) inFlight.add(append.request.stream);
  };

  // The slot is free before the callers hear: a lone appender's next append, made as soon as it
  // hears, finds it free and goes at once instead of waiting for a statement to end. When others
  // share the statement or wait, its callers are gathered first: the first of them to come back
  // would otherwise take the free slot alone, and the others wait for the next one.
  const finish = (batch: readonly FastAppend[]) => {
    running--;
    for (const append of batch) inFlight.delete(append.request.stream);
    if (batch.length > 1 || waiting.length > 0) gather();
    else pump();
  };

  // Pumps once the continuations due now have run (setImmediate comes after them): appends made
  // in this turn of the event loop wait, and go together.
  let gathering = false;
  const gather = () => {
    if (gathering) return;
    gathering = true;
    setImmediate(() => {
      gathering = false;
      pump();
    });
  };

  const pump = () => {
    while (running < statements && waiting.length > 0) {
      // A fair share of the appends waiting and in flight: with two statements and eight writers
      // in step, four and four.
      const batch = takeBatch(Math.ceil((waiting.length + inFlight.size) / statements));
      // Every waiting append is behind one in flight: the end of that statement pumps again.
      if (batch.length === 0) break;
      start(batch);
      void write(batch).then((settled) => {
        finish(batch);
        settled.forEach((outcome, i) => ('error' in outcome ? batch[i]!.reject(outcome.error) : batch[i]!.resolve(outcome.appended)));
      });
    }
    if (running === 0 && waiting.length === 0 && drained.length > 0) for (const done of drained.splice(0)) done();
  };

  return {
    append(append: FastAppend): Promise<AppendedEvent[]> {
      if (closed) return Promise.reject(new EventLogClosedError());
      if (running < statements && waiting.length === 0 && !gathering && !inFlight.has(append.request.stream)) {
        // A slot is free: the append goes at once, with nothing of the queue's bookkeeping.
        const batch = [append];
        start(batch);
        return one(append).then(
          (appended) => {
            finish(batch);
            return appended;
          },
          (error: unknown) => {
            finish(batch);
            throw error;
          },
        );
      }
      waited++;
      const prepared = writer.prepare?.(append) ?? append;
      return new Promise((resolve, reject) => {
        waiting.push({ ...prepared, resolve, reject });
        // With every statement running, the next to end pumps.
        if (running < statements) gather();
      });
    },
    /** Refuses new appends, and resolves once every append taken has been written (or refused). */
    close(): Promise<void> {
      closed = true;
      if (running === 0 && waiting.length === 0) return Promise.resolve();
      return new Promise((resolve) => drained.push(resolve));
    },
    stats: (): AppendQueueStats => ({ waited, together }),
  };
}
