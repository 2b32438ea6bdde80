import pg from 'pg';

/**
 * Runs `work` on a connection of its own, closed afterwards whatever happens: for one-off work
 * (a check at start, a setup step, a plan) that should not take a connection of a pool. Long-lived
 * connections are kept elsewhere (pool.ts, kept-connection.ts).
 */
export async function withClient<T>(config: string | pg.ClientConfig, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(typeof config === 'string' ? { connectionString: config } : config);
  // A connection that dies between two of work's queries (a server shutting down) emits an error
  // that no query is there to take; without a listener it would end the process. The next query
  // fails with it instead.
  client.on('error', () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    // Closing a connection that died already fails too: work's own result or error is the news.
    await client.end().catch(() => undefined);
  }
}
