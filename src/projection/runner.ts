/**
 * The projection runner: reads the log and applies a group of projections to their tables, one
 * transaction per batch holding the row changes of every projection of the group, in log order,
 * and their checkpoints. Projections of a group reference each other by foreign key, which is
 * why they are applied together. The checkpoint rows are locked at the start of each batch and
 * events at or below a projection's checkpoint are skipped: a crash or a second runner can never
 * apply an event twice or skip one.
 */
import { isDeepStrictEqual } from 'node:util';
import type pg from 'pg';
import { withConnection } from '../db/pool.js';
import { isEventType, upcast as catalogueUpcast, type Upcast } from '../catalogue/index.js';
import type { EventLog, LogBatch, RecordedEvent } from '../log/types.js';
import type { Logger } from '../logger.js';
import { describeTables, stampsOf, tableStamps, tableStampsStatement, TablesChangedError, type TableInfo } from './columns.js';
import { beginAndLock, CHECKPOINTS_MOVED, ensureCheckpoints, guardedBatch, lockCheckpoints, markFailed, resumeFailed, saveAndCommit, type CheckpointRow } from './checkpoint.js';
import { changesFor, declaredUpsertKeys, keySignature, type ProjectedEvent, type ProjectionDefinition, type Row, type RowChange } from './definition.js';
import { fingerprintVersion, recordMissingFingerprints } from './fingerprint.js';
import { compileChanges, type Statement } from './statements.js';
import { foreignKeyViolation, keyChecks, mayTurnTriggersOff, type KeyCheck } from './key-checks.js';
import { isTransient } from './transient.js';
import { quoteIdent, textParameter } from '../log/postgres/sql.js';
import { leanPipeline, stepOf } from '../db/lean-query.js';
import { sleep } from '../sleep.js';

/** In a projection's transactions (see `begin` in createRunner): an expression, as SET LOCAL statement_timeout TO 0. */
const NO_STATEMENT_TIMEOUT = "set_config('statement_timeout', '0', true)";

export interface RunnerOptions {
  log: EventLog;
  pool: pg.Pool;
  /** One group: projections applied together. */
  projections: ProjectionDefinition[];
  logger: Logger;
  batchSize?: number;
  /** Schema of the tables (rebuild-projections fills shadow tables in a schema of its own). */
  schema?: string;
  /** Checkpoint name of a projection (the rebuild keeps its shadow checkpoints apart). */
  checkpointName?: (projection: ProjectionDefinition) => string;
  onBatch?: (progress: { position: number; events: number }) => void;
  /**
   * An INSERT of at least this many rows runs with its table's triggers off and has its foreign
   * keys checked set-based afterwards (key-checks.ts), when the role may (default 256). Below
   * that the per-row checks cost less than what set-based checks bring: the tables' lock and
   * stamps, the key checks, and a batch in three round trips instead of one (applyGuarded). At 32,
   * as until 2026-12-07, a live batch of a few dozen events (a burst after a stall of ingestion)
   * took that path and up to 65 ms in `serve` (a batch of as many events without it, 8 ms), and
   * the projection stage's p99 at 1,000 events/s was 78 to 94 ms in three runs of bench/ingest;
   * at 256, 66 and 47 ms (with none set-based, 22 ms in one run). Catch-up and rebuild batches
   * (thousands of events, hundreds of rows per statement) stay set-based.
   */
  setBasedKeyChecksFrom?: number;
  /** Live, with every projection of the group stopped on an error: how often to look whether one runs again (default 5 s). */
  failedRecheckMs?: number;
  /** How events are brought to their type's current schema version before the handlers see them (default: the catalogue's upcasters). */
  upcast?: Upcast;
}

export interface Runner {
  /** The event types the group handles: the log reads only these for it. */
  readonly types: readonly string[];
  /**
   * Applies one batch (events at or below a projection's checkpoint are skipped) and moves the
   * checkpoints to the batch's position, retrying transient failures.
   */
  apply(batch: LogBatch, signal?: AbortSignal): Promise<void>;
  /**
   * Works out the row changes and statements of the batch to be applied after the one being
   * applied now (no I/O), so that this process's CPU work on it overlaps the database's on the
   * current one. The apply that follows uses them if the checkpoints are by then the same for the
   * batch's events, and works them out again otherwise; a failure here is left to that apply.
   */
  planAhead(batch: LogBatch): void;
  /** Applies every event committed now, then returns the position reached. */
  catchUp(signal?: AbortSignal): Promise<number>;
  /** Applies events as they arrive until `signal` aborts. */
  runLive(signal: AbortSignal): Promise<void>;
  /** The lowest checkpoint of the group's running projections (where reading resumes). */
  resumePosition(): Promise<number>;
  /** Saves the checkpoints of batches passed over with nothing to apply (at the end of a run). */
  flush(): Promise<void>;
}

const DEFAULT_BATCH_SIZE = 1000;
const RETRY_DELAYS_MS = [100, 250, 500, 1000, 2000, 5000];

/** A statement of a batch (batchSteps), and what its rows are checked for: the tables' stamps, or a key check's missing parent. */
interface BatchStep {
  text: string;
  values: unknown[];
  stamps?: string[];
  check?: KeyCheck;
}

/** Failures in a row for want of memory after which a batch is applied in halves (applyWithRetry). */
const HALVE_AFTER = 2;

/**
 * Out of memory (53200: work memory, or the shared lock table) or past a configured limit (53400:
 * temp_file_limit): errors of a statement too large for the server, which a smaller batch avoids.
 * Transient all the same (isTransient): another session may be what took the memory.
 */
function lacksResourcesFor(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === '53200' || code === '53400';
}

/** How long a checkpoint may stay behind batches that had nothing to apply. */
const IDLE_SAVE_MS = 1000;

/**
 * A checkpoint is below a position this runner committed it at: the batches in hand (and those
 * read ahead) start after events that are no longer applied. Projection transactions commit
 * asynchronously, and a server crash loses the last of them, rows and checkpoint together; a
 * rebuild's swap or an operator may also set a checkpoint back. Applying the next batch in hand
 * would skip the events in between, so the feed reads the log again from the checkpoints.
 */
export class CheckpointRewoundError extends Error {
  constructor(readonly checkpoint: string, readonly position: number, readonly committedAt: number) {
    super(`checkpoint ${checkpoint} is at ${position}, below ${committedAt} where this runner committed it: reading the log again from it`);
    this.name = 'CheckpointRewoundError';
  }
}

/**
 * A projection's tables were built by a newer release: their recorded fingerprint names a higher
 * version of the projection than this process's (a rebuild by the next release during a rolling
 * upgrade). Applying this process's older handlers to them would leave rows the newer release
 * would not have written, without a word; the runner stops instead, before it applies anything.
 * Not the projection's failure: its checkpoint stays as it is, for the newer release's processes.
 */
export class NewerReleaseError extends Error {
  constructor(readonly projection: string, readonly recordedVersion: number, readonly ownVersion: number) {
    super(
      `projection ${projection} was rebuilt by a newer release (its tables are of version ${recordedVersion}, this process projects version ${ownVersion}): ` +
        'stopped before applying anything to them; run the release that rebuilt them',
    );
    this.name = 'NewerReleaseError';
  }
}

/** An event as handlers see it, brought to the current schema version: upcasting happens here only. */
function toProjected(event: RecordedEvent, upcast: Upcast): ProjectedEvent | undefined {
  if (!isEventType(event.type)) return undefined;
  const current = upcast({ type: event.type, data: event.data, metadata: event.metadata });
  return {
    type: event.type,
    data: current.data as ProjectedEvent['data'],
    stream: event.stream,
    streamVersion: event.streamVersion,
    globalPosition: event.globalPosition,
    metadata: current.metadata ?? {},
  };
}

/** The batch's events as handlers see them, each upcast once for every projection of the group. */
function projectedOnce(events: RecordedEvent[], upcast: Upcast): ProjectedEvent[] {
  return events.flatMap((event) => toProjected(event, upcast) ?? []);
}

/**
 * Reads the next batch while the current one is being applied, when the current one is full (a
 * backlog): PostgreSQL writes one batch while this process receives and parses the next, which
 * keeps both cores busy. After a partial batch (caught up, live) it reads once the batch is
 * applied instead: read ahead, the next batch would hold only what was committed at that moment,
 * a few events, each few costing a transaction; read after, it holds all appended meanwhile.
 */
export async function* readAhead(source: AsyncIterable<LogBatch>, batchSize: number, onReadAhead?: (batch: LogBatch) => void): AsyncGenerator<LogBatch> {
  const iterator = source[Symbol.asyncIterator]();
  let next: Promise<IteratorResult<LogBatch>> | undefined = handled(iterator.next());
  let closed = false;
  try {
    for (;;) {
      const result: IteratorResult<LogBatch> = await (next ?? iterator.next());
      if (result.done) return;
      next = result.value.length >= batchSize ? handled(iterator.next()) : undefined;
      // Called as the read ahead arrives (while its predecessor is being applied, or before):
      // registered before this generator awaits the read, it runs before the batch is yielded.
      // Not for a read dropped below (a feed ended or restarted), and never failing the feed.
      if (next && onReadAhead) {
        next.then((ahead) => {
          if (ahead.done || closed) return;
          try {
            onReadAhead(ahead.value);
          } catch {
            // Only work done ahead: the apply does it again.
          }
        }, () => undefined);
      }
      yield result.value;
    }
  } finally {
    closed = true;
    // The batch read ahead is dropped: its events are read again from the checkpoint next time.
    next?.catch(() => undefined);
    void iterator.return?.(undefined)?.catch(() => undefined);
  }
}

/**
 * `read`, marked as handled: a read ahead that fails (the database gone) while its batch's
 * predecessor is being applied rejects with nothing awaiting it yet, which Node.js takes for an
 * unhandled rejection and ends the process with, before the loop could await it and retry.
 */
function handled<T>(read: Promise<T>): Promise<T> {
  read.catch(() => undefined);
  return read;
}

export function createRunner(options: RunnerOptions): Runner {
  const { pool, projections, logger } = options;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const failedRecheckMs = options.failedRecheckMs ?? 5000;
  const upcast = options.upcast ?? catalogueUpcast;
  const schema = options.schema ?? 'public';
  const nameOf = options.checkpointName ?? ((projection: ProjectionDefinition) => projection.name);
  const names = projections.map(nameOf);
  const versions = new Map(projections.map((projection) => [nameOf(projection), projection.version]));
  const keyChecksFrom = options.setBasedKeyChecksFrom ?? 256;
  const tableNames = projections.flatMap((p) => p.tables);
  let tables: Map<string, TableInfo> | undefined;
  /** The catalog's stamp of each table when `tables` was read (tableStamps): its part holds while its stamp is the same. */
  let stamps = new Map<string, string>();
  let triggersMayBeOff = false;
  let initialised: Promise<void> | undefined;

  const init = () =>
    (initialised ??= (async () => {
      const client = await pool.connect();
      try {
        // Stamped first: a change between the two is then seen as one by the next comparison.
        stamps = await tableStamps(client, tableNames, schema);
        tables = await describeTables(client, tableNames, schema);
        triggersMayBeOff = await mayTurnTriggersOff(client);
        if (!triggersMayBeOff) logger.info('foreign keys are checked row by row: this role may not set session_replication_role (GRANT SET ON PARAMETER session_replication_role for set-based checks)');
      } finally {
        client.release();
      }
      await ensureCheckpoints(pool, names);
      await resumeFailed(pool, names);
      if (schema === 'public') await recordMissingFingerprints(pool, projections);
    })().catch((error) => {
      initialised = undefined;
      throw error;
    }));

  const upsertKeys = declaredUpsertKeys(projections);
  /** Upsert keys already found declared, as written (`table:a,b`): the check runs once per shape. */
  const declaredAsWritten = new Set<string>();
  const changesOf = (projection: ProjectionDefinition, event: ProjectedEvent): RowChange[] => {
    const changes = changesFor(projection, event);
    for (const change of changes) {
      if (change.op !== 'upsert') continue;
      const written = `${change.table}:${change.key.join(',')}`;
      if (declaredAsWritten.has(written)) continue;
      if (!upsertKeys.has(keySignature(change.table, change.key))) {
        throw new Error(`projection ${projection.name} upserts ${change.table} on (${change.key.join(', ')}), a key its definition does not declare in upsertKeys`);
      }
      declaredAsWritten.add(written);
    }
    return changes;
  };

  /**
   * Per id sequence, the highest id the changes insert: the batch's end moves each sequence past
   * it, as conda-store's own inserts would have (ids come from events, so the sequences never hand
   * them out; they stay usable for anything that inserts without an id).
   */
  function highestIds(changes: RowChange[]): Map<string, number> {
    const highest = new Map<string, number>();
    for (const change of changes) {
      const id = change.op === 'sql' ? change.insertsId : change.op === 'insert' || change.op === 'upsert' ? change.row.id : undefined;
      const sequence = tables!.get(change.table)?.idSequence;
      if (typeof id === 'number' && sequence) highest.set(sequence, Math.max(highest.get(sequence) ?? 0, id));
    }
    return highest;
  }

  /**
   * Whether `which` of the tables changed since they were read: if so, `tables` is read again and
   * the statements built from the old description must not run. Stamps that moved while the
   * description stayed the same (an index added) are only taken as the new ones.
   */
  async function tablesChanged(client: pg.ClientBase, which: string[] = tableNames): Promise<boolean> {
    const now = await tableStamps(client, which, schema);
    if (which.every((table) => now.get(table) === stamps.get(table))) return false;
    // Stamped first, as in init: a change between the two is seen by the next comparison.
    const all = await tableStamps(client, tableNames, schema);
    const fresh = await describeTables(client, tableNames, schema);
    stamps = all;
    if (isDeepStrictEqual(fresh, tables)) return false;
    tables = fresh;
    logger.info({ schema }, 'the projection tables changed since they were read (a migration): read them again');
    return true;
  }

  /** The key checks of an INSERT that runs with its triggers off (enough rows, and the role may). */
  const setBased = (statement: Statement) =>
    triggersMayBeOff && statement.checked && statement.checked.rows.length >= keyChecksFrom ? statement.checked : undefined;

  /**
   * Every statement has its parameters as values of ours (see Statement.inline: they can go as
   * text parameters of a prepared statement) and none is set-based.
   */
  const allInline = (statements: Statement[]) => statements.every((statement) => statement.inline && !setBased(statement));

  /**
   * A batch's statements and what goes around them (pure), as steps to run in order:
   * - before the first statement that runs with triggers off (setBased), the tables such
   *   statements write are locked against any change of their columns, keys, triggers or rules
   *   (ROW EXCLUSIVE conflicts with the locks of ALTER TABLE for those, CREATE TRIGGER and CREATE
   *   RULE), then stamped, to be checked as read (runSteps). Without it, a foreign key or a
   *   trigger that a migration added after the runner read the tables went unchecked and unfired
   *   by every large insert until a restart. Statements with triggers on take no such lock:
   *   PostgreSQL checks the keys and fires the triggers there are, and a batch that fails because
   *   of a change is checked after it failed (applyBatch). What neither catches: a column whose
   *   type a migration widened in precision (numeric, timestamp), to which a live batch's values
   *   are still cast as the old type, rounded, without an error (README).
   * - Triggers back on before any other statement and at the end, then the keys of what went in
   *   without them: checked before any statement that runs with triggers (a delete of the parent
   *   later in the batch is legitimate, and a cascade would apply to the rows as they are then)
   *   and before the checkpoint.
   * In 'isolating' mode (one event of one projection, in a savepoint: isolateFailure) every
   * statement runs with its triggers, so that a failure is PostgreSQL's own, about the event,
   * and never one of the runner's checks of its tables.
   */
  function batchSteps(statements: Statement[], mode: 'batch' | 'isolating'): BatchStep[] {
    const triggersOffFor = mode === 'batch' ? setBased : () => undefined;
    const steps: BatchStep[] = [];
    const locked = [...new Set(statements.flatMap((statement) => (triggersOffFor(statement) ? [statement.checked!.table] : [])))];
    if (locked.length) {
      steps.push({ text: `LOCK TABLE ${locked.map((table) => `${quoteIdent(schema)}.${quoteIdent(table)}`).join(', ')} IN ROW EXCLUSIVE MODE`, values: [] });
      steps.push({ ...tableStampsStatement(locked, schema), stamps: locked });
    }
    let triggersOff = false;
    let written: { table: string; rows: Row[] }[] = [];
    const triggersOn = () => {
      if (!triggersOff) return;
      steps.push({ text: 'SET LOCAL session_replication_role = origin', values: [] });
      triggersOff = false;
      for (const check of keyChecks(written, tables!)) steps.push({ text: check.text, values: check.values, check });
      written = [];
    };
    for (const statement of statements) {
      const checked = triggersOffFor(statement);
      if (!checked) triggersOn();
      else if (!triggersOff) {
        steps.push({ text: 'SET LOCAL session_replication_role = replica', values: [] });
        triggersOff = true;
      }
      steps.push({ text: statement.text, values: statement.values });
      if (checked) written.push(checked);
    }
    triggersOn();
    return steps;
  }

  /**
   * Runs the steps. When every parameter is a value of ours (every statement has `inline`), in one
   * round trip (leanPipeline), their results checked once all have run: a large catch-up or
   * rebuild batch took six round trips for them (lock, stamps, triggers off, two inserts,
   * triggers on), and the first ones waited behind this process reading and planning the next
   * batch while the database had nothing to do; sent at once, the database inserts while this
   * process plans. A step whose check fails after later steps ran is no harm: the transaction is
   * rolled back. Otherwise one at a time, each checked as it returns.
   */
  async function runSteps(client: pg.ClientBase, steps: BatchStep[], pipelined: boolean): Promise<void> {
    if (pipelined) {
      const results = await leanPipeline(client, steps.map((step) => stepOf(step.text, step.values.map(textParameter))));
      for (const [i, step] of steps.entries()) await checkStep(client, step, results[i]!);
      return;
    }
    for (const step of steps) {
      const { rows } = await client.query<unknown[]>({ text: step.text, values: step.values, rowMode: 'array' });
      await checkStep(client, step, rows);
    }
  }

  /** Throws TablesChangedError for stamps that show the tables changed (tablesChanged), a key violation for a check that found a missing parent. */
  async function checkStep(client: pg.ClientBase, step: BatchStep, rows: unknown[][]): Promise<void> {
    if (step.stamps) {
      const now = stampsOf(rows);
      if (!step.stamps.every((table) => now.get(table) === stamps.get(table)) && (await tablesChanged(client, step.stamps))) throw new TablesChangedError();
    }
    if (step.check && rows[0]) throw foreignKeyViolation(step.check, Object.fromEntries(rows[0].map((value, i) => [`k${i}`, value])));
  }

  /**
   * Runs the statements for the changes (batchSteps, runSteps) and returns the highest ids
   * (highestIds). In a 'batch', statements that need nothing afterwards (allInline: every one
   * runs with its triggers) are returned as `deferred` instead, to go with the checkpoint and
   * COMMIT in one round trip (saveAndCommit): a live batch of a few events is then two round
   * trips, not one per statement more.
   */
  async function execute(
    client: pg.ClientBase,
    changes: RowChange[],
    mode: 'batch' | 'isolating',
    statements = compileChanges(changes, tables!),
  ): Promise<{ sequences: Map<string, number>; deferred: Statement[] }> {
    if (mode === 'batch' && allInline(statements)) return { sequences: highestIds(changes), deferred: statements };
    await runSteps(client, batchSteps(statements, mode), statements.every((statement) => statement.inline));
    return { sequences: highestIds(changes), deferred: [] };
  }

  // Projection transactions commit asynchronously: they hold derived data only. A server crash
  // can lose the last few hundred milliseconds of them, rows and checkpoint together (a commit is
  // never torn), and the runner applies those events again from the log, whose appends are
  // synchronous. Waiting for each batch's WAL flush would only add latency.
  // Without a statement timeout (a user's, from PGOPTIONS or the role): a batch is the log's to
  // apply, however long it takes or waits (behind a rebuild's swap, which holds the checkpoints),
  // and a timeout says nothing of its events; taken for the event's fault, it stopped the
  // projection at a valid event, or failed serve.
  // The three settings in one statement: each is a step of every batch's pipeline (one execution
  // each on the server), and a live batch at 1,000 events/s carries a few events.
  // READ COMMITTED, whatever the database's or role's default: each statement sees what committed
  // before it, as the checkpoint lock and the tables' check after their lock (batchSteps) need.
  const begin = ['BEGIN ISOLATION LEVEL READ COMMITTED', `SELECT set_config('search_path', '"${schema}", public', true), set_config('synchronous_commit', 'off', true), ${NO_STATEMENT_TIMEOUT}`];

  /** Where a batch's transaction ends: the checkpoints that move, to where, and the id sequences. */
  interface BatchEnd {
    names: string[];
    position: number;
    sequences: Map<string, number>;
    /** Statements of the batch still to run, before the checkpoint (see execute). */
    deferred?: Statement[];
  }

  /** When a batch's transaction last committed (see applyBatch: batches with nothing to apply). */
  let savedAt = 0;
  /** The last position of batches passed over without a transaction since then. */
  let unsaved: number | undefined;
  /** Saves `unsaved` once no batch has done it for IDLE_SAVE_MS: the log may stay quiet for long. */
  let idleSave: NodeJS.Timeout | undefined;

  /**
   * The checkpoints as this runner's last transaction left them (undefined: not known, or that
   * transaction failed). With them, a batch goes in one round trip (applyGuarded).
   */
  let known: Map<string, CheckpointRow> | undefined;

  /**
   * The position each checkpoint was last committed at by this runner, or found at when its feed
   * started reading: unlike `known`, kept through failures, so that a checkpoint found lower
   * after one (a commit lost in a server crash) is noticed (rewound).
   */
  let committedAt = new Map<string, number>();

  /**
   * Projections this runner has found stopped on an error, and the end of the last batch it was
   * given (applied or passed over). A stopped projection's checkpoint stays where it stopped while
   * the feed goes on (the group's others, or none, apply the batches); set running again below
   * where the feed is (a rebuild's swap, an operator), the events between were never applied to
   * it, and the feed must read them again (rewound).
   */
  let stoppedSeen = new Set<string>();
  let fedTo = 0;

  /** After a batch's COMMIT: when it was, and the checkpoints it left. */
  function committed(checkpoints: Map<string, CheckpointRow>, end: BatchEnd): void {
    savedAt = performance.now();
    for (const checkpoint of checkpoints.values()) if (checkpoint.state !== 'running') stoppedSeen.add(checkpoint.name);
    if (unsaved !== undefined && unsaved <= end.position) unsaved = undefined;
    const moved = new Set(end.names);
    known = new Map([...checkpoints].map(([name, checkpoint]) => [name, { ...checkpoint, position: moved.has(name) ? end.position : checkpoint.position }]));
    for (const name of moved) committedAt.set(name, Math.max(committedAt.get(name) ?? 0, end.position));
  }

  /** Throws NewerReleaseError when a newer release built the tables of a projection of the group (their fingerprint). */
  function builtByNewerRelease(checkpoints: Map<string, CheckpointRow>): void {
    for (const checkpoint of checkpoints.values()) {
      const recorded = fingerprintVersion(checkpoint.fingerprint);
      const own = versions.get(checkpoint.name)!;
      if (recorded !== undefined && recorded > own) throw new NewerReleaseError(checkpoint.name, recorded, own);
    }
  }

  /**
   * Throws CheckpointRewoundError when a locked checkpoint is below where this runner committed it,
   * or is one it found stopped, running again below where its feed has been.
   */
  function rewound(checkpoints: Map<string, CheckpointRow>): void {
    for (const checkpoint of checkpoints.values()) {
      if (checkpoint.state !== 'running') continue;
      const revived = stoppedSeen.has(checkpoint.name);
      const at = revived ? Math.max(fedTo, committedAt.get(checkpoint.name) ?? 0) : committedAt.get(checkpoint.name);
      if (at === undefined || checkpoint.position >= at) {
        // Running again at or past where the feed has been: the batches from here on apply it
        // (pending), as for any running projection.
        if (revived) {
          stoppedSeen.delete(checkpoint.name);
          committedAt.set(checkpoint.name, checkpoint.position);
        }
        continue;
      }
      // The events passed over since were passed over from the batches in hand: not to be saved.
      unsaved = undefined;
      clearTimeout(idleSave);
      idleSave = undefined;
      const error = new CheckpointRewoundError(checkpoint.name, checkpoint.position, at);
      logger.warn(
        { checkpoint: checkpoint.name, position: checkpoint.position, committedAt: at },
        revived
          ? 'a stopped projection runs again below where this runner has read: reading the log again from its checkpoint'
          : 'checkpoint below where this runner committed it (a transaction lost in a server crash?): reading the log again from it',
      );
      throw error;
    }
  }

  /**
   * Runs a batch's transaction on a connection of its own and records what it committed. On any
   * failure it rolls back (a connection that cannot is closed), and the runner no longer knows its checkpoints.
   */
  async function batchTransaction(run: (client: pg.PoolClient) => Promise<{ checkpoints: Map<string, CheckpointRow>; end: BatchEnd }>): Promise<void> {
    try {
      await withConnection(pool, async (client) => {
        const { checkpoints, end } = await run(client);
        committed(checkpoints, end);
      }, () => 'ROLLBACK');
    } catch (error) {
      known = undefined;
      throw error;
    }
  }

  /** A batch in two round trips: BEGIN and the checkpoint lock, then `work`'s statements, the save and COMMIT. */
  async function inTransaction(work: (client: pg.PoolClient, checkpoints: Map<string, CheckpointRow>) => Promise<BatchEnd>): Promise<void> {
    await batchTransaction(async (client) => {
      const checkpoints = await beginAndLock(client, begin, names);
      builtByNewerRelease(checkpoints);
      rewound(checkpoints);
      const end = await work(client, checkpoints);
      await saveAndCommit(client, end.names, end.position, end.sequences, end.deferred);
      return { checkpoints, end };
    });
  }

  /** A batch's row changes and statements, for the projections that still need each event as `checkpoints` say. */
  interface Planned {
    checkpoints: Map<string, CheckpointRow>;
    changes: RowChange[];
    statements: Statement[];
  }

  function plan(batch: LogBatch, checkpoints: Map<string, CheckpointRow>): Planned {
    const changes: RowChange[] = [];
    for (const event of projectedOnce(batch, upcast)) {
      for (const projection of pending(checkpoints, event)) changes.push(...changesOf(projection, event));
    }
    return { checkpoints, changes, statements: compileChanges(changes, tables!) };
  }

  /**
   * Batches planned ahead (planAhead), with the tables' description each was compiled for; at
   * most two: with several groups fed together (catchUpTogether), the next batch's read may come
   * in while a group has still to apply the current one, whose plan must then stay.
   */
  const ahead = new Map<LogBatch, { planned: Planned; tables: Map<string, TableInfo> }>();

  function planAhead(batch: LogBatch): void {
    if (!known || !tables || batch.length === 0) return;
    try {
      ahead.set(batch, { planned: plan(batch, known), tables });
    } catch {
      return; // a handler that throws: the apply plans the batch again and isolates the event
    }
    for (const older of ahead.keys()) if (ahead.size > 2) ahead.delete(older);
  }

  /** The plan of `batch` for `checkpoints`: the one made ahead if it holds for them, else made now. */
  function planFor(batch: LogBatch, checkpoints: Map<string, CheckpointRow>): Planned {
    const made = ahead.get(batch);
    ahead.delete(batch);
    if (made && made.tables === tables && sameFor(batch, made.planned.checkpoints, checkpoints)) {
      return { ...made.planned, checkpoints };
    }
    return plan(batch, checkpoints);
  }

  /**
   * Whether a plan for checkpoints `a` holds for `b`: a plan depends on them only through which
   * projections run and are below each event (pending), so a checkpoint that moved from below the
   * batch to elsewhere below it (the batch before committed meanwhile) changes nothing.
   */
  const sameFor = (batch: LogBatch, a: Map<string, CheckpointRow>, b: Map<string, CheckpointRow>) => {
    const first = batch[0]!.globalPosition;
    return a.size === b.size && [...a.values()].every((c) => {
      const other = b.get(c.name);
      return other !== undefined && other.state === c.state && (other.position === c.position || (other.position < first && c.position < first));
    });
  };

  const sameCheckpoints = (a: Map<string, CheckpointRow>, b: Map<string, CheckpointRow>) =>
    a.size === b.size && [...a.values()].every((c) => b.get(c.name)?.position === c.position && b.get(c.name)?.state === c.state);

  /**
   * A batch in one round trip rather than two (a live batch of a few events is mostly round
   * trips): when this runner knew its checkpoints (`planned` for them) and every statement can go
   * inline (allInline), it sends BEGIN, the guard (the row locks every batch takes, and CS101
   * unless the checkpoints are as it knows them), the statements, the save and COMMIT at once, as
   * prepared statements (guardedBatch). False when it cannot, or when the guard found the
   * checkpoints moved (rolled back: the caller takes the two round trips).
   */
  async function applyGuarded(batch: LogBatch, { checkpoints, changes, statements }: Planned): Promise<boolean> {
    if (!allInline(statements)) return false;
    const end: BatchEnd = { names: advancing(checkpoints, batch.position), position: batch.position, sequences: highestIds(changes) };
    try {
      await batchTransaction(async (client) => {
        await guardedBatch(client, begin, checkpoints, end.names, end.position, end.sequences, statements);
        return { checkpoints, end };
      });
      return true;
    } catch (error) {
      if ((error as { code?: string }).code !== CHECKPOINTS_MOVED) throw error;
      logger.debug({ position: batch.position }, 'checkpoints moved since the last batch: applying it in two round trips');
      return false;
    }
  }

  /** Which projections still need this event: they handle its type, run, and their checkpoint is below it. */
  const pending = (checkpoints: Map<string, CheckpointRow>, event: { type: string; globalPosition: number }) =>
    projections.filter((projection) => {
      const checkpoint = checkpoints.get(nameOf(projection))!;
      return event.type in projection.handlers && checkpoint.state === 'running' && checkpoint.position < event.globalPosition;
    });

  const handledTypes = new Set(projections.flatMap((projection) => Object.keys(projection.handlers)));

  /** A batch applied, passed over, or its failing event isolated: the feed has been to its end (fedTo). */
  async function applyBatch(batch: LogBatch): Promise<void> {
    await applyOrPassOver(batch);
    fedTo = Math.max(fedTo, batch.position);
  }

  async function applyOrPassOver(batch: LogBatch): Promise<void> {
    const last = batch.position;
    // A batch with no event of a type the group handles (or none at all: the log read past events
    // of other types) changes nothing: its checkpoint can move with a later batch. Live, every
    // append wakes every group, and a group that handles few types (namespace_usage) would
    // otherwise commit a transaction per append for nothing. The checkpoint still moves within
    // IDLE_SAVE_MS (status shows a lag no older), and at the end of a catch-up or a live run (flush).
    if (!batch.some((event) => handledTypes.has(event.type)) && performance.now() - savedAt < IDLE_SAVE_MS) {
      unsaved = last;
      idleSave ??= setTimeout(() => {
        idleSave = undefined;
        flush().catch((error) => {
          // Rewound (a lost commit): the next batch finds it again and has the feed read the log anew.
          // Rebuilt by a newer release: the next batch stops the runner, saying so.
          if (error instanceof CheckpointRewoundError || error instanceof NewerReleaseError) return;
          logger.error({ err: error }, 'could not save the checkpoint of events with nothing to apply');
        });
      }, IDLE_SAVE_MS).unref();
      return;
    }
    try {
      // Planned once (or ahead: planFor): after the guard, or when the locked checkpoints are the
      // ones it knew (a large catch-up batch, set-based, takes the locking path), the plan holds.
      const planned = known && planFor(batch, known);
      if (!(planned && (await applyGuarded(batch, planned)))) {
        await inTransaction(async (client, checkpoints) => {
          const { changes, statements } = planned && sameCheckpoints(planned.checkpoints, checkpoints) ? planned : plan(batch, checkpoints);
          const { sequences, deferred } = await execute(client, changes, 'batch', statements);
          return { names: advancing(checkpoints, last), position: last, sequences, deferred };
        });
      }
    } catch (error) {
      if (isTransient(error) || error instanceof CheckpointRewoundError || error instanceof NewerReleaseError) throw error;
      // A batch that fails because the tables changed under it (a type, a key, a sequence renamed) is
      // applied again with them as they are, not taken for an event no projection can apply.
      if (await withConnection(pool, (client) => tablesChanged(client), () => undefined)) throw new TablesChangedError();
      await isolateFailure(batch, error);
    }
  }

  /**
   * The runner's transactions, one at a time. The idle save's timer used to fire while a batch was
   * being applied: the batch's guard found the checkpoint moved, raised CS101 (an ERROR in
   * PostgreSQL's log, about once a second in serve) and the batch took two round trips.
   */
  let running: Promise<unknown> = Promise.resolve();
  function oneAtATime<T>(work: () => Promise<T>): Promise<T> {
    const result = running.then(work);
    running = result.catch(() => undefined);
    return result;
  }

  /** Moves the checkpoints past the batches passed over with nothing to apply (one at a time: see oneAtATime). */
  const flush = () => oneAtATime(saveUnsaved);

  async function saveUnsaved(): Promise<void> {
    clearTimeout(idleSave);
    idleSave = undefined;
    const position = unsaved;
    if (position === undefined) return;
    try {
      await init();
      await inTransaction(async (_client, checkpoints) => ({ names: advancing(checkpoints, position), position, sequences: new Map() }));
    } catch (error) {
      // Only a lag lost: the next run passes over the same events again.
      if (!isTransient(error)) throw error;
      logger.warn({ err: error, position }, 'could not save the checkpoint of events with nothing to apply');
    }
  }

  const advancing = (checkpoints: Map<string, CheckpointRow>, position: number) =>
    [...checkpoints.values()].filter((c) => c.state === 'running' && c.position < position).map((c) => c.name);

  /**
   * The batch failed on some event of some projection. Replay it event by event, each projection
   * of an event in a savepoint, to find which: that projection stops at that event (state failed,
   * the event and the error recorded), the others go on.
   */
  async function isolateFailure(events: RecordedEvent[], batchError: unknown): Promise<void> {
    let found = false;
    for (const event of events) {
      // An upcaster that throws on this event's data stops the projections of the event, as a
      // handler that throws does: thrown from here, it would end serve, and again at each start.
      let projected: ProjectedEvent | undefined;
      let upcastFailure: { error: unknown } | undefined;
      try {
        projected = toProjected(event, upcast);
      } catch (error) {
        upcastFailure = { error };
      }
      await inTransaction(async (client, checkpoints) => {
        // A deferred constraint (a migration may make one so) is checked at COMMIT, after the
        // savepoint that isolates the projection: checked at each statement instead, its error
        // comes up inside the savepoint and names the projection, rather than failing the COMMIT.
        // (So an event whose changes hold only once all of them are in, through a deferred
        // constraint, would stop its projection here; the projections write their rows in an
        // order the tables' immediate keys take, as conda-store's tables have them.)
        await client.query('SET CONSTRAINTS ALL IMMEDIATE');
        const failedHere: string[] = [];
        const sequences = new Map<string, number>();
        for (const projection of projected || upcastFailure ? pending(checkpoints, event) : []) {
          await client.query('SAVEPOINT projection');
          try {
            if (!projected) throw upcastFailure!.error;
            for (const [sequence, id] of (await execute(client, changesOf(projection, projected), 'isolating')).sequences) sequences.set(sequence, Math.max(sequences.get(sequence) ?? 0, id));
            await client.query('RELEASE SAVEPOINT projection');
          } catch (error) {
            if (isTransient(error)) throw error;
            await client.query('ROLLBACK TO SAVEPOINT projection');
            // Tables changed since the batch failed and they were checked (applyBatch): the event
            // may be fine with them as they are now. Read again, the batch goes again.
            if (await tablesChanged(client)) throw new TablesChangedError();
            const message = error instanceof Error ? error.message : String(error);
            await markFailed(client, nameOf(projection), event, message);
            failedHere.push(nameOf(projection));
            logger.error({ projection: nameOf(projection), position: event.globalPosition, eventId: event.id, eventType: event.type, err: error }, 'projection stopped at an event it cannot apply');
          }
        }
        for (const name of failedHere) checkpoints.get(name)!.state = 'failed';
        found ||= failedHere.length > 0;
        return { names: advancing(checkpoints, event.globalPosition), position: event.globalPosition, sequences };
      });
    }
    // Nothing to replay (the save of a range passed over failed): the error is the save's.
    if (events.length === 0) throw batchError;
    // Event by event, everything went in: the batch failed only as a whole (e.g. two changes that
    // merged badly). Nothing is lost; say so and go on.
    if (!found) logger.warn({ err: batchError, from: events[0]!.globalPosition, to: events[events.length - 1]!.globalPosition }, 'batch failed as a whole but applied event by event');
  }

  /**
   * Applies a batch, retrying transient failures with back-off until it goes through or `signal`
   * aborts. A batch the server lacks the memory for, twice in a row, goes in halves instead (each
   * retried, and halved again, the same way): retried whole, it failed for ever.
   */
  async function applyWithRetry(batch: LogBatch, signal?: AbortSignal): Promise<void> {
    let tooLarge = 0;
    for (let attempt = 0; ; attempt++) {
      try {
        await init();
        await applyBatch(batch);
        return;
      } catch (error) {
        // Read again (tablesChanged): applied again at once, with statements built anew (the
        // retries below are for a database that does not answer).
        if (error instanceof TablesChangedError && !signal?.aborted) continue;
        if (!isTransient(error) || signal?.aborted) throw error;
        tooLarge = lacksResourcesFor(error) ? tooLarge + 1 : 0;
        if (tooLarge >= HALVE_AFTER && batch.length > 1) {
          const half = Math.ceil(batch.length / 2);
          logger.warn({ err: error, events: batch.length, from: batch[0]!.globalPosition, to: batch.position }, 'the database lacks the resources for this batch: applying it in halves');
          // The first half ends at its last event; the second covers the rest of the range read.
          await applyWithRetry(Object.assign(batch.slice(0, half), { position: batch[half - 1]!.globalPosition }), signal);
          await applyWithRetry(Object.assign(batch.slice(half), { position: batch.position }), signal);
          return;
        }
        const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)]!;
        logger.warn({ err: error, attempt, delayMs: delay }, 'database unavailable, retrying the batch');
        await sleep(delay, signal);
        if (signal?.aborted) throw error;
      }
    }
  }

  async function resumePosition(): Promise<number> {
    await init();
    const checkpoints = await withConnection(pool, async (client) => {
      await client.query(`BEGIN; SELECT ${NO_STATEMENT_TIMEOUT}`);
      const locked = await lockCheckpoints(client, names);
      await client.query('COMMIT');
      return locked;
    }, () => 'ROLLBACK');
    builtByNewerRelease(checkpoints);
    known = checkpoints;
    ahead.clear(); // a new feed: its batches are read anew
    // Reading starts from these: the positions a later batch must find its checkpoints at, or above.
    committedAt = new Map([...checkpoints.values()].map((c) => [c.name, c.position]));
    // The end of a range passed over before is no longer behind what is applied (these checkpoints
    // may be below it: a lost commit): saved, it would move them over events never applied. The
    // feed passes over that range again.
    clearTimeout(idleSave);
    idleSave = undefined;
    unsaved = undefined;
    const running = [...checkpoints.values()].filter((c) => c.state === 'running');
    const from = running.length ? Math.min(...running.map((c) => c.position)) : Number.MAX_SAFE_INTEGER;
    // A stopped projection set running again below `from` before the first batch was not read from.
    stoppedSeen = new Set([...checkpoints.values()].filter((c) => c.state !== 'running').map((c) => c.name));
    fedTo = from;
    return from;
  }

  const runner: Runner = {
    types: [...handledTypes],
    apply: (batch, signal) => oneAtATime(() => applyWithRetry(batch, signal)),
    planAhead,
    resumePosition: () => oneAtATime(resumePosition),
    flush,
    catchUp: (signal) => catchUpTogether(options.log, [runner], { batchSize, signal, onBatch: options.onBatch }),
    async runLive(signal) {
      let from = (await runner.resumePosition()) + 1;
      if (!Number.isSafeInteger(from)) {
        // Every projection of the group stopped on an error: nothing to apply until one runs
        // again (a rebuild swapped in, or a restart after a fix). Returning at once had serve
        // take the group again at once, in a tight loop of connections and log lines; waiting
        // only for the end, it held the group for nothing after a rebuild had fixed it.
        logger.warn('every projection of the group stopped on an error: nothing to apply until one runs again');
        while (!Number.isSafeInteger(from)) {
          await sleep(failedRecheckMs, signal);
          if (signal.aborted) return;
          from = (await runner.resumePosition()) + 1;
        }
        logger.info({ from }, 'a projection of the group runs again: applying');
      }
      await consume((after) => options.log.subscribe({ from: after, batchSize, signal, types: runner.types }), from, [runner], { batchSize, signal, onBatch: options.onBatch });
    },
  };
  return runner;
}

interface FeedOptions {
  batchSize?: number;
  signal?: AbortSignal;
  onBatch?: (progress: { position: number; events: number }) => void;
}

/**
 * Feeds the batches of `read(from)` to the runners; when one finds its checkpoint set back
 * (CheckpointRewoundError), reads again from where their checkpoints are now.
 */
async function consume(read: (from: number) => AsyncIterable<LogBatch>, from: number, runners: Runner[], options: FeedOptions): Promise<number> {
  let position = 0;
  let count = 0;
  try {
    for (let start = from; Number.isSafeInteger(start); ) {
      try {
        const planAhead = (batch: LogBatch) => {
          for (const runner of runners) runner.planAhead(batch);
        };
        for await (const batch of readAhead(read(start), options.batchSize ?? DEFAULT_BATCH_SIZE, planAhead)) {
          for (const runner of runners) await runner.apply(batch, options.signal);
          position = batch.position;
          count += batch.length;
          options.onBatch?.({ position, events: count });
          if (options.signal?.aborted) break;
        }
        // Inside the loop: saving the checkpoints of batches passed over may find one rewound too.
        for (const runner of runners) await runner.flush();
        break;
      } catch (error) {
        if (!(error instanceof CheckpointRewoundError)) throw error;
        start = Math.min(...(await Promise.all(runners.map((runner) => runner.resumePosition())))) + 1;
      }
    }
  } catch (error) {
    // Saved (or dropped) now: no idle save may fire once the caller has closed the pool.
    for (const runner of runners) await runner.flush().catch(() => undefined);
    throw error;
  }
  return position;
}

/**
 * Catches several runners up with one read of the log: each batch goes to every runner in turn
 * (rebuilding or catching up several groups reads the log once, not once per group). Returns
 * the position reached.
 */
export async function catchUpTogether(log: EventLog, runners: Runner[], options: FeedOptions = {}): Promise<number> {
  const positions = await Promise.all(runners.map((runner) => runner.resumePosition()));
  const from = Math.min(...positions) + 1;
  if (!Number.isSafeInteger(from)) return 0; // every projection stopped on an error
  const types = [...new Set(runners.flatMap((runner) => runner.types))];
  const reached = await consume((after) => log.readAll({ from: after, batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE, types }), from, runners, options);
  return Math.max(reached, from - 1);
}
