import pg from 'pg';
import { parse } from 'pg-connection-string';
import { destroyClient } from './end-client.js';

/**
 * READ COMMITTED whatever the database's or role's default, for connections whose statements must
 * each see what committed before them (the log's decisions after their locks, the rebuild's checks
 * under its locks).
 */
export const READ_COMMITTED = '-c default_transaction_isolation=read\\ committed';

/** The server's keepalives: it ends the session of a client whose host died within about a minute. */
const SERVER_KEEPALIVES = '-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3';

/**
 * Options of a connection that lives as long as the process holds something on it (a group's
 * lock, a LISTEN). Such a session, its host dead or cut off, would otherwise live on, idle, until
 * TCP notices: two hours by default. Keepalives on both ends end it within about a minute (the
 * server's probes) and tell this end its connection is gone (the client's); a connect that hangs
 * (the server's host unreachable) gives up rather than hold a stop.
 */
export const LONG_LIVED_CONNECTION = {
  connectionTimeoutMillis: 10_000,
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000,
  options: SERVER_KEEPALIVES,
} satisfies pg.ClientConfig;

/**
 * `config` with its `options` (session settings: `-c name=value`) added to the options the user
 * gave: a connection string's `options`, else PGOPTIONS. node-postgres lets a connection string's
 * `options` replace the config's, and reads PGOPTIONS only when the config has none, so either
 * silently dropped the settings the code relies on (the log's isolation, the keepalives of a
 * lock's connection) or the user's own (a statement_timeout); the code's come last, and win.
 */
export function keepingOptions<C extends pg.ClientConfig>(config: C, env: NodeJS.ProcessEnv = process.env): C {
  if (!config.options) return config;
  const parsed = config.connectionString ? parse(config.connectionString) : undefined;
  const theirs = parsed?.options ?? env.PGOPTIONS;
  if (!theirs) return config;
  const options = `${theirs} ${config.options}`;
  if (!parsed?.options) return { ...config, options };
  const { connectionString: _, ...rest } = config;
  return { ...rest, ...parsed, options } as C;
}

/**
 * A connection pool that survives lost connections. pg-pool emits 'error' for an idle client
 * that dies (server restart) and leaves a checked-out client without a listener, so a connection
 * lost between two statements of a transaction would crash the process with an uncaught 'error'
 * event. Here both are reported to `onError`, and the next statement on a dead client fails
 * (a transient error the caller retries).
 *
 * Its connections send TCP keepalives (unless `config` says otherwise): a statement waiting for
 * the answer of a server whose host died, or whose network drops packets without a reset (a
 * failover, a firewall), waited for ever without them, and with it the ingester's batch, which
 * kept its messages held on NATS. With them the wait fails after the kernel's probes (10 s idle,
 * then its probe interval and count: about 11 minutes with Linux's defaults of 75 s and 9), and
 * the caller retries on a new connection. The server sends its own (SERVER_KEEPALIVES): a client
 * whose host died, or was cut off, in the middle of a transaction left its session idle in that
 * transaction for the kernel's two hours, holding its locks (a projection group's checkpoint rows:
 * the process that took the group over waited behind them).
 */
export function createPool(config: pg.PoolConfig & { onError: (error: unknown) => void }): pg.Pool {
  const { onError, ...poolConfig } = config;
  const options = poolConfig.options ? `${SERVER_KEEPALIVES} ${poolConfig.options}` : SERVER_KEEPALIVES;
  const pool = new pg.Pool(keepingOptions({ keepAlive: true, keepAliveInitialDelayMillis: 10_000, ...poolConfig, options }));
  const clients = new Set<pg.Client>();
  connectionsOf.set(pool, clients);
  pool.on('error', onError);
  pool.on('connect', (client) => {
    clients.add(client);
    client.on('error', onError);
  });
  pool.on('remove', (client) => clients.delete(client));
  return pool;
}

/** The open connections of each pool createPool made. */
const connectionsOf = new WeakMap<pg.Pool, Set<pg.Client>>();

/**
 * Closes the sockets of every connection of `pool` at once (no Terminate, no wait for the server):
 * for a stop that a database which does not answer (a network cut) would otherwise hold, in a
 * statement or in the pool's end, until the keepalives give up. What was in flight fails.
 */
export function destroyConnections(pool: pg.Pool): void {
  for (const client of connectionsOf.get(pool) ?? []) destroyClient(client);
}

/** A connection lent for a statement or two: `release` gives it back (with an error: closed, never lent again). */
export interface Lease {
  readonly client: pg.PoolClient;
  release(error?: Error): void;
}

/** Where the connections of statements come from: a pool, or a kept connection in front of one (kept-connection.ts). */
export interface Connections {
  lease(): Promise<Lease>;
}

/** A connection of `source`. */
export function leaseFrom(source: pg.Pool | Connections): Promise<Lease> {
  if ('lease' in source) return source.lease();
  return source.connect().then((client) => ({ client, release: (error) => client.release(error) }));
}

/**
 * Runs one statement (`run`, which must send exactly one, or one pipeline up to one Sync: one
 * implicit transaction, as a fenced append's; lean-query.ts) on a connection of `source` and gives
 * the connection back, also when the statement fails with an error that `refused` says left the
 * session as it was (the caller knows its statement's refusals). pg-pool's own `pool.query`
 * closes the connection on any error, so every refused append used to cost a new connection.
 * After any other error the connection is closed, as before: a cancel, a timeout or a deadlock
 * may have come while the statement held a session lock (the log's position lock), and closing
 * is what releases it.
 */
export async function runKeepingConnection<T>(
  source: pg.Pool | Connections,
  run: (client: pg.PoolClient) => Promise<T>,
  refused: (error: pg.DatabaseError) => boolean,
): Promise<T> {
  const { client, release } = await leaseFrom(source);
  try {
    const result = await run(client);
    release();
    return result;
  } catch (error) {
    release(error instanceof pg.DatabaseError && refused(error) ? undefined : (error as Error));
    throw error;
  }
}

/**
 * Runs `work` on a connection of `source`. When it fails, the statement `cleanup` names for the
 * error (if any) runs on the same connection first, and a connection that cannot run it is closed
 * rather than handed out again: it may still hold a transaction (ROLLBACK failed) or a session
 * lock (the log's position lock), and closing it releases them.
 */
export async function withConnection<T>(source: pg.Pool | Connections, work: (client: pg.PoolClient) => Promise<T>, cleanup: (error: unknown) => string | undefined): Promise<T> {
  const { client, release } = await leaseFrom(source);
  let broken: Error | undefined;
  try {
    return await work(client);
  } catch (error) {
    const statement = cleanup(error);
    if (statement) await client.query(statement).catch((cleanupError: Error) => (broken = cleanupError));
    throw error;
  } finally {
    release(broken);
  }
}
