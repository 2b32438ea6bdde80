import { TablesChangedError } from './columns.js';

/**
 * Errors that say nothing about the event being applied (connection lost, server restarting,
 * deadlock, serialization failure): retry the batch later. Anything else is the event's fault and
 * stops the projection at that event.
 */
export function isTransient(error: unknown): boolean {
  // The tables changed under the batch and were read again (columns.ts): the batch goes again.
  if (error instanceof TablesChangedError) return true;
  const code = (error as { code?: string })?.code;
  if (typeof code !== 'string') {
    const message = error instanceof Error ? error.message : String(error);
    return /Connection terminated|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i.test(message);
  }
  return (
    code.startsWith('08') || // connection exception
    code.startsWith('53') || // insufficient resources
    code.startsWith('57P') || // operator intervention: shutdown, crash recovery
    code === '40001' || // serialization failure
    code === '40P01' || // deadlock
    code === '55P03' || // lock not available
    code === 'CS008' || // an append undone to be made again after a claim in flight (src/log/postgres/append.ts)
    code === '25006' || // read-only transaction: a standby reached during a failover, a database set read-only for maintenance
    code === '57014' || // query canceled: by an operator (pg_cancel_backend), or a statement timeout
    /^E[A-Z_]+$/.test(code) // Node socket and DNS errors (ECONNREFUSED, EAI_AGAIN, ...)
  );
}
