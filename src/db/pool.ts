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

/**
 * Runs one statement on a connection of the pool and gives the connection back, also when the
 * statement is refused: an error of severity ERROR (a wrong expected version, a duplicate key)
 * leaves the session as it was. pg-pool's own `pool.query` closes the connection on any error,
 * so every refused append used to cost a new connection. A connection that failed (a FATAL
 * error, the network) is closed.
 */
export async function queryKeepingConnection<R extends pg.QueryResultRow>(pool: pg.Pool, query: pg.QueryConfig): Promise<pg.QueryResult<R>> {
  const client = await pool.connect();
  try {
    const result = await client.query<R>(query);
    client.release();
    return result;
  } catch (error) {
    const refused = error instanceof pg.DatabaseError && error.severity === 'ERROR';
    client.release(refused ? undefined : (error as Error));
    throw error;
  }
}
