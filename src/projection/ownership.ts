import pg from 'pg';
import { keepingOptions, LONG_LIVED_CONNECTION } from '../db/pool.js';
import { sleep } from '../sleep.js';

/** Advisory-lock class of projection groups (7401: streams, 7402: positions; see the log's migration). */
const OWNERSHIP_LOCK_CLASS = 7403;

export interface Ownership {
  /** Aborted when the lock's connection is lost: the owner must stop applying. */
  lost: AbortSignal;
  release(): Promise<void>;
}

/**
 * Waits until this process owns a projection group, i.e. holds its session-level advisory lock on
 * a connection of its own. When the owner dies its session ends and the lock passes to the next
 * waiter. The lock is a courtesy that keeps two processes from doing the same work: exactly-once
 * does not depend on it, since every batch also locks and compares the checkpoints.
 */
export async function acquireOwnership(
  connectionString: string,
  group: string,
  options: { signal?: AbortSignal; pollMs?: number; onWaiting?: () => void } = {},
): Promise<Ownership | undefined> {
  const pollMs = options.pollMs ?? 1000;
  let warned = false;
  while (!options.signal?.aborted) {
    // LONG_LIVED_CONNECTION: an owner whose host died loses the lock within about a minute.
    const client = new pg.Client(keepingOptions({ connectionString, ...LONG_LIVED_CONNECTION }));
    const lost = new AbortController();
    client.on('error', () => lost.abort());
    client.on('end', () => lost.abort());
    await client.connect();
    let owned: boolean;
    try {
      const { rows } = await client.query<{ owned: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS owned', [OWNERSHIP_LOCK_CLASS, group]);
      owned = rows[0]!.owned;
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (owned) {
      return {
        lost: lost.signal,
        release: async () => {
          await client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [OWNERSHIP_LOCK_CLASS, group]).catch(() => undefined);
          await client.end().catch(() => undefined);
        },
      };
    }
    await client.end();
    if (!warned) {
      options.onWaiting?.();
      warned = true;
    }
    await sleep(pollMs, options.signal);
  }
  return undefined;
}
