/**
 * PostgreSQL errors caused by a statement's data rather than by the system: data exceptions
 * (class 22: a NUL character or a lone surrogate in JSON, which jsonb cannot store), integrity
 * (23) and program limits (54: a value too large for its index). The session is as it was after
 * one of them; retrying the same statement fails the same way.
 */
export type DataErrorClass = '22' | '23' | '54';

/**
 * Program limits (54000) the server raises for its own state, not for a statement's data: a full
 * NOTIFY queue (a listener idle in a long transaction; an append that carries a wake-up fails at
 * commit) and the stop before transaction-id wraparound. The same statement succeeds later: taken
 * for the event's fault, it would be refused for good.
 */
const SYSTEM_LIMITS = /NOTIFY queue|not accepting commands/;
/** The server functions that raise them: untranslated, whatever the server's lc_messages. */
const SYSTEM_LIMIT_ROUTINES = new Set(['PreCommit_Notify', 'GetNewTransactionId', 'GetNewMultiXactId']);

/** The class of a data error (see DataErrorClass), or undefined for any other error. */
export function dataErrorClass(error: unknown): DataErrorClass | undefined {
  const { code, message, routine } = (error ?? {}) as { code?: unknown; message?: unknown; routine?: unknown };
  if (typeof code !== 'string') return undefined;
  const cls = code.slice(0, 2);
  if (cls === '54' && (SYSTEM_LIMIT_ROUTINES.has(routine as string) || (typeof message === 'string' && SYSTEM_LIMITS.test(message)))) return undefined;
  return cls === '22' || cls === '23' || cls === '54' ? cls : undefined;
}
