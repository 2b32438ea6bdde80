import pg from 'pg';

/**
 * A connection pool that survives lost connections. pg-pool emits 'error' for an idle client
 * that dies (server restart) and leaves a checked-out client without a listener, so a connection
 * lost between two statements of a transaction would crash the process with an uncaught 'error'
 * event. Here both are reported to `onError`, and the next statement on a dead client fails
 * (a transient error the caller retries).
 */
export function createPool(config: pg.PoolConfig & { onError: (error: unknown) => void }): pg.Pool {
  const { onError, ...poolConfig } = config;
  const pool = new pg.Pool(poolConfig);
  pool.on('error', onError);
  pool.on('connect', (client) => client.on('error', onError));
  return pool;
}
