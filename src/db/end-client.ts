import type pg from 'pg';

/** Closes a client's socket at once (no Terminate message, no wait for the server). */
export function destroyClient(client: pg.Client): void {
  (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
}

/**
 * Ends a client politely, or destroys its socket if the end has not completed within `ms`: on a
 * silent connection (a network cut, no reset) the end waits for an answer that never comes.
 */
export function endWithin(client: pg.Client, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      destroyClient(client);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.end().then(done, done);
  });
}
