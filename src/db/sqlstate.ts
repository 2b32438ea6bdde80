/**
 * PostgreSQL errors caused by a statement's data rather than by the system: data exceptions
 * (class 22: a NUL character or a lone surrogate in JSON, which jsonb cannot store), integrity
 * (23) and program limits (54: a value too large for its index). The session is as it was after
 * one of them; retrying the same statement fails the same way.
 */
export type DataErrorClass = '22' | '23' | '54';

/** The class of a data error (see DataErrorClass), or undefined for any other error. */
export function dataErrorClass(error: unknown): DataErrorClass | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string') return undefined;
  const cls = code.slice(0, 2);
  return cls === '22' || cls === '23' || cls === '54' ? cls : undefined;
}
