/**
 * The event log: the storage-agnostic interface that every backend implements (PostgreSQL,
 * EventStoreDB) and that the contract suite in test/log-contract.ts checks.
 */

/** What the writer expects of a stream before its events go in (contract.md, "The event log"). */
export type ExpectedVersion = number | 'no_stream' | 'stream_exists' | 'any';

/** An event as given to `append`: its stream is the request's. */
export interface EventInput {
  id: string;
  type: string;
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

/** A unique key claimed with an append, e.g. `{ name: 'namespace.name', value: 'default' }`. */
export interface KeyClaim {
  name: string;
  value: string;
  /**
   * For the key `stream` (an aggregate's existence): the stream of its parent aggregate. For
   * another key: what holds it within the claiming stream (an event's id, a pair). A key held by
   * another stream is a duplicate; one held by the same stream is a duplicate unless both claims
   * name the same parent.
   */
  parent?: string;
}

export interface KeyRelease {
  name: string;
  value?: string;
}

/** A fact about another stream that must hold when the append commits (checked under its lock). */
export type Precondition =
  | { kind: 'exists'; stream: string; message: string }
  /** A key is held, e.g. `{ name: 'conda_package_build.id', value: '42' }`; with `holder`, by that stream. */
  | { kind: 'key'; name: string; value: string; holder?: string; message: string }
  /** The aggregate of `stream` exists and its parent aggregate is `parent`. */
  | { kind: 'child_of'; stream: string; parent: string; message: string }
  | { kind: 'no_children'; stream: string; message: string }
  | { kind: 'version'; stream: string; version: number; message: string };

/** One stream's part of an append. Several requests in one `append` call are atomic together. */
export interface AppendRequest {
  stream: string;
  expectedVersion?: ExpectedVersion;
  events: EventInput[];
  claims?: KeyClaim[];
  /** Keys this stream holds that it gives up (a purged namespace's name); without a value, every key of that name. */
  releases?: KeyRelease[];
  preconditions?: Precondition[];
}

export interface AppendedEvent {
  id: string;
  stream: string;
  streamVersion: number;
  globalPosition: number;
  recordedAt: Date;
  /** True when the event was already in the log: nothing was written for it. */
  duplicate: boolean;
}

export interface RecordedEvent {
  id: string;
  type: string;
  stream: string;
  streamVersion: number;
  globalPosition: number;
  recordedAt: Date;
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
}

export interface ReadStreamOptions {
  direction?: 'forward' | 'backward';
  /** First stream version to return (inclusive); default: the start (forward) or the end (backward). */
  fromVersion?: number;
  maxCount?: number;
}

export interface ReadAllOptions {
  /** First global position to return (inclusive); default 1. */
  from?: number;
  batchSize?: number;
  /**
   * Only events of these types. The others are passed over where the log is stored (their data
   * never leaves it), and each batch's `position` says how far the read got past them.
   */
  types?: readonly string[];
}

/**
 * A batch of the global log: events in position order, and `position`, how far the log has been
 * read: the last event's position, or beyond it when a type filter passed over later events. A
 * filtered read may yield a batch without events, only to say how far it got (a reader that
 * checkpoints saves that position, and does not read those events again).
 */
export type LogBatch = RecordedEvent[] & { readonly position: number };

export interface SubscribeOptions extends ReadAllOptions {
  signal?: AbortSignal;
}

/**
 * A writer's hold of a fence (a fencing token): the fence's name and the epoch the writer raised
 * it to (EventLog.raiseFence).
 */
export interface Fence {
  name: string;
  epoch: number;
}

export interface AppendOptions {
  /**
   * The append commits only while this hold is the fence's current epoch; once another writer has
   * raised the fence it fails with FencedError and writes nothing.
   */
  fence?: Fence;
}

export interface EventLog {
  /** Appends atomically: every event of every request, or none. */
  append(requests: AppendRequest | AppendRequest[], options?: AppendOptions): Promise<AppendedEvent[]>;
  readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  /** The log in position order, in batches, up to what is committed now; never skips a late commit. */
  readAll(options?: ReadAllOptions): AsyncIterable<LogBatch>;
  /**
   * Catch-up from `from`, then live: batches in position order, each event exactly once. Stop it
   * with `signal`, or by leaving the `for await` loop (which returns the iterator): one dropped
   * without either stays live for the log (the PostgreSQL backend keeps its own appends for it).
   */
  subscribe(options?: SubscribeOptions): AsyncIterable<LogBatch>;
  /**
   * Raises the fence `name` (creating it at epoch 1) and returns the new hold, for a writer that
   * takes a job over from another that may still live (an ingester whose lock was lost while its
   * batch went on). From then on, appends fenced with an older hold fail with FencedError; those
   * in flight when it is called have committed by the time it returns, or fail.
   */
  raiseFence(name: string): Promise<Fence>;
  /** The highest committed global position (0 for an empty log). */
  headPosition(): Promise<number>;
  /** `n` fresh ids for an aggregate kind, from that kind's sequence. */
  allocateIds(kind: string, n: number): Promise<number[]>;
  /**
   * Ids of `kind` up to `through` are in the log (appended from elsewhere: a restore): allocateIds
   * hands out only ids above them from now on.
   */
  reserveIds(kind: string, through: number): Promise<void>;
  close(): Promise<void>;
}
