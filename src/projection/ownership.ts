import pg from 'pg';
import { keepingOptions, LONG_LIVED_CONNECTION } from '../db/pool.js';
import { turnOffTimeouts } from '../db/session-timeouts.js';
import { settlesWithin, sleep } from '../sleep.js';
import { endWithin } from '../db/end-client.js';

/** Advisory-lock class of projection groups (7401: streams, 7402: positions; see the log's migration). */
const OWNERSHIP_LOCK_CLASS = 7403;
/** How long a release waits for the unlock, then for the connection's end. */
const RELEASE_WAIT_MS = 5_000;

export interface Ownership {
  /** Aborted when the lock's connection is lost: the owner must stop applying. */
  lost: AbortSignal;
  /**
   * Runs `work` on the lock's own connection, whose session holds the lock: what it writes can
   * commit only while the lock is held, and never once another process has taken it (the session
   * that would commit it has ended by then). The ingester raises its fence so.
   */
  run<T>(work: (client: pg.ClientBase) => Promise<T>): Promise<T>;
  release(): Promise<void>;
}

/**
 * One try at owning a projection group: its session-level advisory lock on a connection of its
 * own, or null when another process holds it. When the owner dies its session ends and the lock
 * is free again. The lock is a courtesy that keeps two processes from doing the same work:
 * exactly-once does not depend on it, since every batch also locks and compares the checkpoints.
 */
export async function tryOwnership(connectionString: string, group: string): Promise<Ownership | null> {
  // LONG_LIVED_CONNECTION: an owner whose host died loses the lock within about a minute.
  const client = new pg.Client(keepingOptions({ connectionString, ...LONG_LIVED_CONNECTION }));
  const lost = new AbortController();
  client.on('error', () => lost.abort());
  client.on('end', () => lost.abort());
  await client.connect();
  let owned: boolean;
  try {
    // Idle for as long as it owns: an idle_session_timeout would end it, and hand the group (or
    // the ingestion) to another process while this one finishes its batch.
    await turnOffTimeouts(client, ['idle_session_timeout']);
    const { rows } = await client.query<{ owned: boolean }>('SELECT pg_try_advisory_lock($1, hashtext($2)) AS owned', [OWNERSHIP_LOCK_CLASS, group]);
    owned = rows[0]!.owned;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw error;
  }
  if (!owned) {
    await client.end();
    return null;
  }
  return {
    lost: lost.signal,
    run: (work) => work(client),
    // Bounded: a stop in a network cut would otherwise wait for the lock's connection until its
    // keepalives give up. Its socket destroyed, the server ends the session, and the lock with
    // it, once its own keepalives find the client gone.
    release: async () => {
      await settlesWithin(client.query('SELECT pg_advisory_unlock($1, hashtext($2))', [OWNERSHIP_LOCK_CLASS, group]), RELEASE_WAIT_MS);
      await endWithin(client, RELEASE_WAIT_MS);
    },
  };
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** How often to try again while another process owns it (default 1 s). */
  pollMs?: number;
  /** Called once, at the first try that finds it owned by another process. */
  onWaiting?: () => void;
}

/**
 * Tries `take` until it gives something (tryOwnership, or all of several), every `pollMs`;
 * undefined when `signal` aborts first.
 */
export async function waitFor<T>(take: () => Promise<T | null>, options: WaitOptions = {}): Promise<T | undefined> {
  let warned = false;
  while (!options.signal?.aborted) {
    const taken = await take();
    if (taken !== null) return taken;
    if (!warned) {
      options.onWaiting?.();
      warned = true;
    }
    await sleep(options.pollMs ?? 1000, options.signal);
  }
  return undefined;
}

/** Waits until this process owns a projection group (tryOwnership); undefined if `signal` aborts first. */
export function acquireOwnership(connectionString: string, group: string, options: WaitOptions = {}): Promise<Ownership | undefined> {
  return waitFor(() => tryOwnership(connectionString, group), options);
}

/**
 * Every group of `groups` or none: owns them all, or gives back those it took and returns null.
 * For a process that needs several groups at once (catch-up): holding some while waiting for the
 * others, it kept a `serve` that owned one of those from ever owning the ones it held (serve never
 * gives a group back), each process waiting for the other for ever.
 */
export async function tryOwningAll(connectionString: string, groups: readonly string[]): Promise<Ownership[] | null> {
  const owned: Ownership[] = [];
  try {
    for (const group of groups) {
      const ownership = await tryOwnership(connectionString, group);
      if (!ownership) {
        for (const taken of owned.splice(0)) await taken.release();
        return null;
      }
      owned.push(ownership);
    }
    return owned;
  } catch (error) {
    for (const taken of owned) await taken.release();
    throw error;
  }
}
