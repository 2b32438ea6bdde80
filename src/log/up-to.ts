import type { EventLog, LogBatch, ReadAllOptions } from './types.js';

/** `log`, whose global reads stop at position `last`: a catch-up that goes that far and no further. */
export function logUpTo(log: EventLog, last: number): EventLog {
  async function* limited(options: ReadAllOptions): AsyncGenerator<LogBatch> {
    if ((options.from ?? 1) > last) return;
    for await (const batch of log.readAll(options)) {
      const kept = batch.filter((event) => event.globalPosition <= last);
      yield Object.assign(kept, { position: Math.min(batch.position, last) });
      if (batch.position >= last) return;
    }
  }
  return { ...log, readAll: (options = {}) => limited(options) };
}
