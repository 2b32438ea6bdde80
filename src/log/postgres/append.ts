import pg from 'pg';
import { leanPipeline, leanQuery, type PipelineStep, type TextRow } from '../../db/lean-query.js';
import { leaseFrom, runKeepingConnection, type Connections } from '../../db/pool.js';
import { canonicalUuid } from '../event-id.js';
import { EventIdConflictError } from '../errors.js';
import type { AppendedEvent, AppendOptions, AppendRequest, EventInput, Fence } from '../types.js';
import { isRefusal, translateError } from './errors.js';
import type { StreamVersions } from './stream-versions.js';
import type { Notification } from './wakeups.js';
import { arrayParameter, sqlFile, toNumber } from './sql.js';

export const APPEND_SQL = sqlFile(import.meta.url, 'append.sql');

/** An event's data and metadata as the JSON the append sends (metadata null: none given, stored as {}). */
export interface EventJson {
  data: string;
  metadata: string | null;
}

/**
 * The JSON of every event of `requests`, in order, for an append whose events are also kept in
 * memory (recent-appends.ts): made once, for the statement and for the subscribers.
 */
export function eventJson(requests: readonly AppendRequest[]): EventJson[] {
  return requests.flatMap((request) => request.events.map(jsonOf));
}

/** One event's JSON (eventJson). */
function jsonOf(event: EventInput): EventJson {
  return { data: JSON.stringify(event.data ?? null) ?? 'null', metadata: event.metadata ? JSON.stringify(event.metadata) : null };
}

/** The events' data and metadata as one JSON array each, as append_events() and append-streams.sql take them. */
export type JsonArrays = [data: string, metadata: string];

/**
 * Data and metadata of `events` as one JSON array each, as the statements take them: from `json`
 * when given, else in one JSON.stringify each (faster than joining one text per event, which only
 * pays when the texts are kept).
 */
function jsonArrays(events: readonly EventInput[], json: readonly EventJson[] | undefined): JsonArrays {
  if (!json) return [JSON.stringify(events.map((event) => event.data ?? null)), JSON.stringify(events.map((event) => event.metadata ?? null))];
  return [`[${json.map((e) => e.data).join(',')}]`, `[${json.map((e) => e.metadata ?? 'null').join(',')}]`];
}

/**
 * Flattens the requests into the column arrays of `event_store.append_events()` (one round trip,
 * one implicit transaction: see migrations/20260101000100_event_store.ts for the algorithm).
 */
export function appendParameters(requests: AppendRequest[], notification?: Notification, json?: readonly EventJson[], arrays?: JsonArrays): (string | null)[] {
  const ids: string[] = [], groups: number[] = [], eventStreams: string[] = [], types: string[] = [];
  const streams: string[] = [], expected: string[] = [];
  const claimGroup: number[] = [], claimStream: string[] = [], claimName: string[] = [], claimValue: string[] = [], claimParent: (string | null)[] = [];
  const releaseGroup: number[] = [], releaseName: string[] = [], releaseValue: (string | null)[] = [];
  const condGroup: number[] = [], condStream: string[] = [], condKind: string[] = [], condArg: (string | null)[] = [], condMessage: string[] = [];
  requests.forEach((request, index) => {
    const group = index + 1;
    streams.push(request.stream);
    expected.push(expectedText(request));
    for (const event of request.events) {
      ids.push(event.id);
      groups.push(group);
      eventStreams.push(request.stream);
      types.push(event.type);
    }
    for (const claim of request.claims ?? []) {
      claimGroup.push(group);
      claimStream.push(request.stream);
      claimName.push(claim.name);
      claimValue.push(claim.value);
      claimParent.push(claim.parent ?? null);
    }
    for (const release of request.releases ?? []) {
      releaseGroup.push(group);
      releaseName.push(release.name);
      releaseValue.push(release.value ?? null);
    }
    for (const condition of request.preconditions ?? []) {
      condGroup.push(group);
      condKind.push(condition.kind);
      // 'key' conditions travel as (stream: value, arg: name, then chr(31) and the holder if any);
      // see event_store.failed_precondition() (migrations 20260101000100 and 20260101001200).
      condStream.push(condition.kind === 'key' ? condition.value : condition.stream);
      condArg.push(
        condition.kind === 'version' ? String(condition.version)
        : condition.kind === 'key' ? (condition.holder === undefined ? condition.name : `${condition.name}\u001f${condition.holder}`)
        : condition.kind === 'child_of' ? condition.parent
        : null,
      );
      condMessage.push(condition.message);
    }
  });
  const asArrays = (...lists: (string | number | null)[][]) => lists.map(arrayParameter);
  return [...asArrays(ids, groups, eventStreams, types), ...(arrays ?? jsonArrays(requests.flatMap((request) => request.events), json)),
    ...asArrays(streams, expected, claimGroup, claimStream, claimName, claimValue, claimParent, releaseGroup, releaseName, releaseValue,
      condGroup, condStream, condKind, condArg, condMessage),
    ...notificationParameters(notification)];
}

/** The channel and payload of the notification an append carries, or nulls. */
function notificationParameters(notification: Notification | undefined): [string | null, string | null] {
  return [notification?.channel ?? null, notification?.payload ?? null];
}

/**
 * A statement of the fast path: its prepared statement's name, and its text headed by a comment
 * with that name. The server keeps a statement's first kilobyte only (pg_stat_activity, its logs),
 * here the comments that the three variants of append-stream.sql share: the heading tells them apart.
 */
function named(name: string, sql: string): { name: string; text: string } {
  return { name, text: `-- ${name}\n${sql}` };
}

const APPEND_STREAM_SQL = sqlFile(import.meta.url, 'append-stream.sql');
/** append-stream.sql: one event to one stream, text parameters only (sent without a Describe). */
const APPEND_ONE = named('cse_append_one', APPEND_STREAM_SQL);
/** The same for a new stream (no_stream): without the version lookup, which that case never runs. */
const APPEND_NEW = named('cse_append_new', replaceVersionLookup(APPEND_STREAM_SQL, '-1'));
/** The same for a stream known to be at its expected version at least ($9: that version; stream-versions.ts). */
const APPEND_KNOWN = named('cse_append_known', replaceVersionLookup(APPEND_STREAM_SQL, '$9::bigint'));
/** append-streams.sql: any number of events to one stream or several, as arrays. */
const APPEND_STREAMS_SQL = sqlFile(import.meta.url, 'append-streams.sql');

const RELEASE_POSITION_LOCK_SQL = sqlFile(import.meta.url, 'release-position-lock.sql');

/** append-stream.sql with its marked version lookup replaced by `current` (an expression of the stream's current version). */
function replaceVersionLookup(sql: string, current: string): string {
  const lookup = /\/\* version lookup \*\/[^]*?\/\* end \*\//g;
  const marked = sql.match(lookup)?.length ?? 0;
  if (marked !== 1) throw new Error(`append-stream.sql: the version lookup must be marked once (found ${marked})`);
  return sql.replace(lookup, current);
}

/** An append the fast path can take: one stream, nothing but events. */
export function takesFastPath(requests: AppendRequest[]): requests is [AppendRequest] {
  const [request] = requests;
  return requests.length === 1 && !request!.claims?.length && !request!.releases?.length && !request!.preconditions?.length;
}

/** A prepared statement with text parameters only (arrays in their text form: arrayParameter), as leanQuery sends it. */
export interface TextQuery {
  name: string;
  text: string;
  values: (string | null)[];
}

/**
 * A fast-path statement, with its events' JSON as made when it was built (before any await): the
 * arrays of append-streams.sql, or the one event's texts. Should the statement write nothing, the
 * fallback to append_events() sends that JSON, not the events' data serialized again once the
 * caller may have changed it.
 */
export interface FastQuery extends TextQuery {
  json: JsonArrays | EventJson;
}

/** The events of a fast-path statement as the JSON arrays append_events() takes. */
function fastQueryArrays({ json }: FastQuery): JsonArrays {
  return Array.isArray(json) ? json : [`[${json.data}]`, `[${json.metadata ?? 'null'}]`];
}

/** A request of the fast path, with the notification and JSON its caller gave (append-queue.ts). */
export interface FastAppend {
  request: AppendRequest;
  notification?: Notification | undefined;
  json?: readonly EventJson[] | undefined;
}

/**
 * The statement and parameters of the fast path for `appends` (each of one stream with nothing
 * but events, no stream twice): append-stream.sql for one event, append-streams.sql otherwise.
 * A notification (any of theirs) goes with them: they commit together, and PostgreSQL would send
 * a process's identical ones once anyway.
 */
export function fastPathQuery(appends: readonly FastAppend[]): FastQuery {
  if (appends.length === 1 && appends[0]!.request.events.length === 1) return oneEventQuery(appends[0]!);
  const requests = appends.map((fast) => fast.request);
  const events = requests.flatMap((request) => request.events);
  const notification = notificationParameters(appends.find((fast) => fast.notification)?.notification);
  // The queue makes every waiting append's JSON (AppendWriter.prepare); made here otherwise.
  const json = jsonArrays(events, appends.every((fast) => fast.json) ? appends.flatMap((fast) => fast.json!) : undefined);
  return {
    name: 'cse_append_streams',
    text: APPEND_STREAMS_SQL,
    values: [
      arrayParameter(requests.map((request) => request.stream)),
      arrayParameter(requests.map(expectedText)),
      arrayParameter(requests.map((request) => request.events.length)),
      arrayParameter(events.map((event) => event.id)),
      arrayParameter(events.map((event) => event.type)),
      ...json,
      ...notification,
    ],
    json,
  };
}

/**
 * append-stream.sql for an append of one event: the commonest append, built without the arrays of
 * the general case (every allocation on this path shows in a sequential appender's rate).
 */
function oneEventQuery({ request, notification, json }: FastAppend): FastQuery {
  const event = request.events[0]!;
  const text = json?.[0] ?? jsonOf(event);
  const values = [request.stream, expectedText(request), event.id, event.type, text.data, text.metadata, notification?.channel ?? null, notification?.payload ?? null];
  return { ...(request.expectedVersion === 'no_stream' ? APPEND_NEW : APPEND_ONE), values, json: text };
}

/**
 * The one-event statement without its version lookup when the append expects the version its
 * stream was last seen at (stream-versions.ts): the stream is there or beyond, and beyond, the
 * next version is taken and the unique key raises. Decided once the connection is in hand: a new
 * connection makes the log forget every version (it may reach a server restored from a backup,
 * or a replica promoted behind them), and an append decided before must not miss that.
 */
export function withKnownVersion(query: TextQuery, request: AppendRequest, versions: StreamVersions | undefined): TextQuery {
  const { expectedVersion } = request;
  if (query.name !== APPEND_ONE.name || typeof expectedVersion !== 'number' || versions?.get(request.stream) !== expectedVersion) return query;
  return { ...APPEND_KNOWN, values: [...query.values, String(expectedVersion)] };
}

/** A request's expected version as the statements take it. */
function expectedText(request: AppendRequest): string {
  return String(request.expectedVersion ?? 'any');
}

/** append_events() met, at its insert, an event id committed since it looked its ids up. */
function isIdTakenMeanwhile(error: unknown): boolean {
  const { code, constraint } = error as { code?: string; constraint?: string };
  return code === '23505' && constraint === 'events_id_key';
}

/** The unique violations after which append_events() must decide: an id or a version taken. */
function isTakenElsewhere(error: unknown): boolean {
  const { code, constraint } = error as { code?: string; constraint?: string };
  return code === '23505' && (constraint === 'events_id_key' || constraint === 'events_stream_version_key');
}

export interface FastRow {
  global_position: string;
  stream_version: number;
  recorded_ms: number;
}

/** A row of a fast-path statement, as text: global_position, stream_version, recorded_ms. */
function fastRow([position, version, recordedMs]: TextRow): FastRow {
  return { global_position: position!, stream_version: Number(version), recorded_ms: Number(recordedMs) };
}

/**
 * The rows of a fast-path statement. Both take text parameters only (arrays in their text form:
 * arrayParameter), so they go without node-postgres' Describe and result objects (leanQuery).
 */
export async function fastRows(client: pg.ClientBase, { name, text, values }: TextQuery): Promise<FastRow[]> {
  return (await leanQuery(client, name, text, values)).map(fastRow);
}

/**
 * After a failure of a fast-path statement other than a unique key taken, which may have come
 * while it held the position lock: releases the lock, and gives the error that closes the
 * connection if it cannot (withConnection's rule; pool.ts).
 */
async function releasePositionLock(client: pg.ClientBase): Promise<Error | undefined> {
  try {
    await client.query(RELEASE_POSITION_LOCK_SQL);
    return undefined;
  } catch (error) {
    return error as Error;
  }
}

/**
 * The fast path: `appends` in one statement and one commit (fastPathQuery). Each append's
 * results, in order; undefined when it wrote nothing (an expected version does not hold, an id is
 * in the log already, a version was taken in between, or a `fence` check failed): append_events()
 * then decides and explains, seeing everything committed since, fenced the same way. Both
 * statements return a row per append: its first event's position and version, the others
 * following on.
 *
 * From the connection to the results in one function with two awaits: through withConnection,
 * fastRows and leanQuery, six async functions, the commonest append of a sequential appender
 * spent about 15 µs more of Node.js time (bench/HISTORY.md).
 */
export async function appendFast(
  source: pg.Pool | Connections, appends: readonly FastAppend[], versions?: StreamVersions, query: FastQuery = fastPathQuery(appends), fence?: Fence,
): Promise<AppendedEvent[][] | undefined> {
  const { client, release } = await leaseFrom(source);
  let rows: TextRow[];
  try {
    const statement = withKnownVersion(query, appends[0]!.request, versions);
    // A fence's check follows in the same pipeline (appendSteps).
    rows = (await leanPipeline(client, fence ? [statement, holdFenceStep(fence)] : [statement]))[0]!;
  } catch (error) {
    // A unique key raises in the INSERT, after the subquery that takes the positions has released
    // the position lock: nothing to clean up, append_events() decides. So it does when the
    // fence's check failed, which runs after the statement, lock released, whether or not it
    // wrote (undone): append_events() reports a refusal before the fence, as for any append.
    if (isTakenElsewhere(error) || (fence && (error as { code?: unknown }).code === 'CS009')) {
      release();
      return undefined;
    }
    release(await releasePositionLock(client));
    throw error;
  }
  release();
  if (rows.length === 0) return undefined;
  // Never expected; the statement has committed: an error whose outcome the callers must check.
  // Coded as PostgreSQL's internal_error: a failure of the system, to retry (the events then come
  // back as duplicates), never taken for a fault of the events.
  if (rows.length !== appends.length) {
    throw Object.assign(new Error(`the fast path returned ${rows.length} rows for ${appends.length} appends (their events were written)`), { code: 'XX000' });
  }
  const fast = rows.map(fastRow);
  const recordedAt = new Date(fast[0]!.recorded_ms);
  return appends.map(({ request }, i) => {
    const row = fast[i]!;
    const position = toNumber(row.global_position);
    return request.events.map((event, j) => ({
      id: canonicalUuid(event.id),
      stream: request.stream,
      streamVersion: row.stream_version + j,
      globalPosition: position + j,
      recordedAt,
      duplicate: false,
    }));
  });
}

/**
 * Several appends in one statement, for the append queue: undefined also when the server refused
 * it (the statement rolled back): each append must then go on its own, and gets its own answer.
 * Any other error (a lost connection: it may have committed) is thrown, for every caller to hear.
 */
export function appendToStreams(source: pg.Pool | Connections, appends: readonly FastAppend[]): Promise<AppendedEvent[][] | undefined> {
  return appendFast(source, appends).catch((error: unknown) => {
    if (error instanceof pg.DatabaseError) return undefined;
    throw error;
  });
}

export interface AppendStatementOptions extends Omit<FastAppend, 'request'>, AppendOptions {
  /** The versions this process saw its streams reach: a one-event append may then skip the lookup (withKnownVersion). */
  versions?: StreamVersions | undefined;
}

const HOLD_FENCE_SQL = sqlFile(import.meta.url, 'hold-fence.sql');

/**
 * append_events() and, for a fenced append, the fence's check after it, in one pipeline: one
 * round trip and, up to its Sync, one implicit transaction, which the check's failure undoes.
 */
function appendSteps(values: (string | null)[], fence: Fence | undefined): PipelineStep[] {
  const statement = { name: 'cse_append', text: APPEND_SQL, values };
  return fence ? [statement, holdFenceStep(fence)] : [statement];
}

/** The fence's check, for a pipeline after an append's statement (appendSteps, appendFast). */
function holdFenceStep(fence: Fence): PipelineStep {
  return { name: 'cse_hold_fence', text: HOLD_FENCE_SQL, values: [fence.name, String(fence.epoch)] };
}

/**
 * Appends `requests` atomically. `notification`, if given, is sent by the append's transaction at
 * commit (and not at all if nothing is committed): it was sent if this returns any event. `json`:
 * the events' JSON, if the caller has made it (eventJson).
 */
export async function append(source: pg.Pool | Connections, requests: AppendRequest[], { notification, json, versions, fence }: AppendStatementOptions = {}): Promise<AppendedEvent[]> {
  // Requests without events add nothing to `json` either.
  const nonEmpty = requests.filter((request) => request.events.length > 0);
  if (nonEmpty.length === 0) return [];
  try {
    const single: FastAppend[] | undefined = takesFastPath(nonEmpty) ? [{ request: nonEmpty[0], notification, json }] : undefined;
    // Built now, before any await: its JSON also serves the fallback (FastQuery).
    const fastQuery = single && fastPathQuery(single);
    const fast = single && (await appendFast(source, single, versions, fastQuery, fence));
    if (fast) return fast[0]!;
    // Text parameters only: without node-postgres' Describe and result objects (leanQuery).
    const values = appendParameters(nonEmpty, notification, json, fastQuery && fastQueryArrays(fastQuery));
    let rows: TextRow[];
    for (let attempt = 1; ; attempt++) {
      try {
        rows = (await runKeepingConnection(source, (client) => leanPipeline(client, appendSteps(values, fence)), isRefusal))[0]!;
        break;
      } catch (error) {
        // A key precondition waited for a claim in flight, which committed: this append's
        // positions came before that claim's, so it was undone, to be made again after it (with
        // new positions, the key seen). Past a few times, a transient error for the caller.
        // Or an event id that another transaction had inserted, not yet committed, when this one
        // looked its ids up: made again, the lookup sees it, a duplicate or a conflict.
        if (!(isClaimedMeanwhile(error) || isIdTakenMeanwhile(error)) || attempt >= MEANWHILE_ATTEMPTS) throw error;
      }
    }
    const streamOfEvent = nonEmpty.flatMap((request) => request.events.map(() => request.stream));
    // The columns of append.sql: event_id, global_position, stream_version, recorded_ms, duplicate.
    return rows.map(([id, position, version, recordedMs, duplicate], index) => ({
      id: id!,
      stream: streamOfEvent[index]!,
      streamVersion: Number(version),
      globalPosition: toNumber(position!),
      recordedAt: new Date(Number(recordedMs)),
      duplicate: duplicate === 't',
    }));
  } catch (error) {
    const translated = translateError(error);
    // A database error passed on as it is carries the stack of node-postgres' socket reader; here,
    // in the caller's await chain, it gets this call's and its callers' (as node-postgres' own
    // queries do, on failure only).
    if (translated === error && error instanceof Error) Error.captureStackTrace(error);
    throw translated instanceof EventIdConflictError && !translated.eventId ? await namingEventsInLog(source, translated, nonEmpty) : translated;
  }
}

/** How many times an append is made when appends in flight keep claiming a key it needs, or committing one of its ids. */
const MEANWHILE_ATTEMPTS = 5;

/** append_events() undid the append: a key precondition met a claim in flight that committed (migration 20260101001500). */
function isClaimedMeanwhile(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 'CS008';
}

const IDS_IN_LOG_SQL = sqlFile(import.meta.url, 'ids-in-log.sql');

/**
 * An append refused for mixing events already in the log with new ones in one stream's request
 * (append_events() raises it naming the stream only), with the events already there named: the
 * first one's id as the error's `eventId`, all of them in its message. Looked up after the
 * refusal, outside its transaction; should the lookup fail, the refusal goes as it came.
 */
async function namingEventsInLog(source: pg.Pool | Connections, conflict: EventIdConflictError, requests: readonly AppendRequest[]): Promise<EventIdConflictError> {
  const ids = requests.filter((request) => request.stream === conflict.stream).flatMap((request) => request.events.map((event) => event.id));
  let inLog: string[];
  try {
    inLog = (await runKeepingConnection(source, (client) => leanQuery(client, 'cse_ids_in_log', IDS_IN_LOG_SQL, [arrayParameter(ids)]), () => false)).map(([id]) => id!);
  } catch {
    return conflict;
  }
  if (inLog.length === 0) return conflict;
  const named = new EventIdConflictError(`${conflict.message} (already in the log: ${inLog.join(', ')})`, inLog[0]!, conflict.stream);
  named.stack = conflict.stack?.replace(conflict.message, named.message);
  return named;
}
