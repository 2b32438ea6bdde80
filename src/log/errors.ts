import type { ExpectedVersion } from './types.js';

/** Base class of the log's refusals: the append was rejected and nothing was written. */
export class EventLogError extends Error {
  override name = 'EventLogError';
}

export class WrongExpectedVersionError extends EventLogError {
  override name = 'WrongExpectedVersionError';
  constructor(
    readonly stream: string,
    readonly expected: ExpectedVersion,
    /** The stream's current version, or 'no_stream'. */
    readonly actual: number | 'no_stream',
  ) {
    super(`wrong expected version for stream ${stream}: expected ${expected}, actual ${actual}`);
  }
}

/** An event id already in the log with a different stream, type or data. */
export class EventIdConflictError extends EventLogError {
  override name = 'EventIdConflictError';
  constructor(message: string, readonly eventId: string, readonly stream: string) {
    super(message);
  }
}

/** A unique key (namespace name, specification sha256, ...) already held by another stream. */
export class DuplicateKeyError extends EventLogError {
  override name = 'DuplicateKeyError';
  constructor(message: string, readonly key: string, readonly value: string, readonly takenBy: string | undefined) {
    super(message);
  }
}

/** A precondition on another stream (exists, has no children, is at a version) did not hold. */
export class PreconditionFailedError extends EventLogError {
  override name = 'PreconditionFailedError';
  /** `condition`: the kind of precondition that failed ('exists', 'key', 'child_of', 'version', 'no_children'). */
  constructor(message: string, readonly stream: string, readonly subject: string, readonly condition: string) {
    super(message);
  }
}

export class UnknownIdKindError extends EventLogError {
  override name = 'UnknownIdKindError';
  constructor(readonly kind: string) {
    super(`unknown id kind "${kind}"`);
  }
}

/**
 * An append fenced with a hold that another writer has since raised the fence past
 * (EventLog.raiseFence): nothing was written. Not a refusal of the events, which the writer that
 * holds the fence now decides; the writer that gets this has lost its job and must stop.
 */
export class FencedError extends Error {
  override name = 'FencedError';
  constructor(
    message: string,
    readonly fence: string,
    readonly held: number,
    /** The fence's epoch when the append was made, if it was ever raised. */
    readonly current: number | undefined,
  ) {
    super(message);
  }
}

/**
 * The log was closed before this call: not a refusal of the events (EventLogError), which were
 * never looked at. Whoever retries them does so on another log.
 */
export class EventLogClosedError extends Error {
  override name = 'EventLogClosedError';
  constructor() {
    super('the event log is closed');
  }
}

/**
 * The log holds an event written by another PostgreSQL server, with that server's transaction id
 * (a copy made with pg_dump and pg_restore, or by logical replication): readers, which order
 * what is safe to read by transaction id, cannot read it. Not a refusal of anything appended.
 */
export class ForeignTransactionIdError extends Error {
  override name = 'ForeignTransactionIdError';
  constructor(
    readonly position: number,
    readonly transactionId: string,
    readonly nextTransactionId: string,
  ) {
    super(
      `the event at position ${position} has transaction id ${transactionId}, which this PostgreSQL server has not reached (its next is ${nextTransactionId}): ` +
        'it was written by another server (a copy with pg_dump/pg_restore or logical replication), and readers cannot tell it from an append still in flight. ' +
        'Move a log with `conda-store-events export` and `append` into an empty database, or with a physical copy (pg_basebackup), which keep transaction ids',
    );
  }
}
