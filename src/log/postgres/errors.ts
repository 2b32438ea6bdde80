import { dataErrorClass } from '../../db/sqlstate.js';
import type { ExpectedVersion } from '../types.js';
import {
  DuplicateKeyError,
  EventIdConflictError,
  EventLogError,
  FencedError,
  PreconditionFailedError,
  UnknownIdKindError,
  WrongExpectedVersionError,
} from '../errors.js';

interface PgError {
  code?: string;
  message: string;
  detail?: string;
}

function parseExpected(value: string): ExpectedVersion {
  return /^\d+$/.test(value) ? Number(value) : (value as ExpectedVersion);
}

/** Maps the SQLSTATEs raised by event_store.append_events() (class CS) to the typed errors. */
export function translateError(error: unknown): unknown {
  const pgError = error as PgError;
  if (!pgError?.code?.startsWith('CS')) return error;
  const detail = pgError.detail ? (JSON.parse(pgError.detail) as Record<string, unknown>) : {};
  switch (pgError.code) {
    case 'CS001': {
      const actual = detail.actual as number;
      return new WrongExpectedVersionError(String(detail.stream), parseExpected(String(detail.expected)), actual < 0 ? 'no_stream' : actual);
    }
    case 'CS002':
    case 'CS003':
      return new EventIdConflictError(pgError.message, String(detail.id ?? ''), String(detail.stream));
    case 'CS004':
      return new DuplicateKeyError(pgError.message, String(detail.key), String(detail.value), detail.taken_by as string | undefined);
    case 'CS005':
      return new PreconditionFailedError(pgError.message, String(detail.stream), String(detail.subject), String(detail.condition));
    case 'CS009': {
      const current = detail.current as number | null;
      return new FencedError(pgError.message, String(detail.fence), Number(detail.held), current === null ? undefined : Number(current));
    }
    case 'CS008':
      // Not a refusal: the append met a claim in flight and is to be made again (append.ts).
      return error;
    default:
      return new EventLogError(pgError.message);
  }
}

/**
 * An append refused for its content: one of the log's own refusals (class CS: wrong expected
 * version, duplicate key, failed precondition...) or a data error (src/db/sqlstate.ts). The
 * session is as it was after it.
 */
export function isRefusal(error: unknown): boolean {
  return (error as PgError)?.code?.startsWith('CS') === true || dataErrorClass(error) !== undefined;
}

export function translateIdError(error: unknown, kind: string): unknown {
  return (error as PgError)?.code === '42P01' ? new UnknownIdKindError(kind) : error;
}
