import type pg from 'pg';
import type { Connections, Lease } from './pool.js';

export interface KeptConnection extends Connections {
  /** Gives the kept connection back to the pool (once its statement, if one runs, has ended) and keeps none from then on. */
  close(): void;
}

/**
 * Whether a connection given back can serve another statement: pg-pool asks the same of every
 * connection returned to it (node-postgres' own flags, not a public API), since one whose server
 * ended it may be given back without an error (its statement failed, and nothing had to run
 * after it), before its 'error' event comes.
 */
function usable(client: pg.PoolClient): boolean {
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean };
  return state._queryable !== false && !state._ending;
}

/** What a kept connection left unused for its idle time is given back with: pg-pool closes a connection given back with an error. */
const IDLE = new Error('the kept connection was idle for its idle time');

/**
 * One connection of `pool` kept out of it between the statements of its user, for the next one to
 * take at once. pg-pool's checkout and return of a connection cost more Node.js time than the rest
 * of a one-event append's own work (its 'acquire' and 'release' events, an error listener removed
 * and added again, a closure per checkout, an idle timer set and cleared): about 9 µs per append
 * where a sequential appender's append took about 500 µs (bench/HISTORY.md). A statement that
 * comes while the kept connection is lent takes one of the pool, as before; the first of them to
 * come back without an error becomes the kept one when none is kept.
 *
 * The pool must have room for it: the kept connection is out of the pool for as long as it is
 * kept, and a reader waiting for the pool's last connection would wait for ever. The log sizes its
 * pool one larger (index.ts).
 *
 * A kept connection that fails is closed, never lent again: on an error of its statement (the
 * connection's state is unknown) and on an error event while it waits (the server restarted or
 * closed it), as pg-pool does with its idle connections, so that the next statement takes a new
 * connection instead of failing on a dead one. One left unused for `idleMs` is closed too (given
 * back to the pool, which would lend it again, the last one returned first, it could live on for
 * twice that): a connection kept for ever through a quiet night may be one that a network cut
 * silently, on which the next append would wait for TCP to give up. Checked by one timer per
 * `idleMs` at most, not one per statement.
 */
export function createKeptConnection(pool: pg.Pool, { idleMs }: { idleMs: number }): KeptConnection {
  let kept: (Lease & { giveUp(error?: Error): void }) | undefined;
  let lent = false;
  let closed = false;
  let idleSince = 0;
  let idleTimer: NodeJS.Timeout | undefined;

  const watchIdle = (ms: number) => {
    idleTimer = setTimeout(() => {
      idleTimer = undefined;
      if (!kept) return;
      const idle = lent ? 0 : performance.now() - idleSince;
      if (idle >= idleMs) kept.giveUp(IDLE);
      else watchIdle(idleMs - idle);
    }, ms);
    idleTimer.unref();
  };

  const keep = (client: pg.PoolClient) => {
    let failed: Error | undefined;
    // Back to the pool: with an error, closed by it; without, kept in it for others.
    const giveUp = (error?: Error) => {
      kept = undefined;
      client.removeListener('error', lost);
      client.release(error);
    };
    // While it waits: dropped at once. While lent: dropped when its statement gives it back.
    const lost = (error: Error) => {
      failed ??= error;
      if (!lent) giveUp(error);
    };
    kept = {
      client,
      release(error) {
        lent = false;
        idleSince = performance.now();
        if (error || failed || closed || !usable(client)) giveUp(error ?? failed);
      },
      giveUp,
    };
    client.on('error', lost);
    idleSince = performance.now();
    if (!idleTimer) watchIdle(idleMs);
  };

  // A connection of the pool, given back: kept if none is, else returned to the pool.
  const giveBack = (client: pg.PoolClient, error: Error | undefined) => {
    if (error || kept || closed || !usable(client)) client.release(error);
    else keep(client);
  };

  return {
    lease() {
      if (kept && !lent) {
        lent = true;
        return Promise.resolve(kept);
      }
      return pool.connect().then((client): Lease => ({ client, release: (error) => giveBack(client, error) }));
    },
    close() {
      closed = true;
      clearTimeout(idleTimer);
      if (kept && !lent) kept.giveUp();
    },
  };
}
