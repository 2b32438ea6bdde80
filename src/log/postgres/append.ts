import type pg from 'pg';
import type { AppendedEvent, AppendRequest } from '../types.js';
import { translateError } from './errors.js';
import { sqlFile, toNumber } from './sql.js';

export const APPEND_SQL = sqlFile(import.meta.url, 'append.sql');

/**
 * Flattens the requests into the column arrays of `event_store.append_events()` (one round trip,
 * one implicit transaction: see migrations/20260101000100_event_store.ts for the algorithm).
 */
export function appendParameters(requests: AppendRequest[]): unknown[] {
  const ids: string[] = [], groups: number[] = [], eventStreams: string[] = [], types: string[] = [], data: unknown[] = [], metadata: unknown[] = [];
  const streams: string[] = [], expected: string[] = [];
  const claimGroup: number[] = [], claimStream: string[] = [], claimName: string[] = [], claimValue: string[] = [], claimParent: (string | null)[] = [];
  const releaseGroup: number[] = [], releaseName: string[] = [], releaseValue: (string | null)[] = [];
  const condGroup: number[] = [], condStream: string[] = [], condKind: string[] = [], condArg: (string | null)[] = [], condMessage: string[] = [];
  requests.forEach((request, index) => {
    const group = index + 1;
    streams.push(request.stream);
    expected.push(String(request.expectedVersion ?? 'any'));
    for (const event of request.events) {
      ids.push(event.id);
      groups.push(group);
      eventStreams.push(request.stream);
      types.push(event.type);
      data.push(event.data);
      metadata.push(event.metadata ?? null);
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
      // 'key' conditions travel as (stream: value, arg: name); see event_store.failed_precondition().
      condStream.push(condition.kind === 'key' ? condition.value : condition.stream);
      condArg.push(
        condition.kind === 'version' ? String(condition.version)
        : condition.kind === 'key' ? condition.name
        : condition.kind === 'child_of' ? condition.parent
        : null,
      );
      condMessage.push(condition.message);
    }
  });
  return [ids, groups, eventStreams, types, JSON.stringify(data), JSON.stringify(metadata), streams, expected, claimGroup, claimStream, claimName, claimValue, claimParent,
    releaseGroup, releaseName, releaseValue, condGroup, condStream, condKind, condArg, condMessage];
}

interface AppendRow {
  event_id: string;
  global_position: string;
  stream_version: number;
  recorded_at: Date;
  duplicate: boolean;
}

export const APPEND_STREAM_SQL = sqlFile(import.meta.url, 'append-stream.sql');
const RELEASE_POSITION_LOCK_SQL = sqlFile(import.meta.url, 'release-position-lock.sql');

/** An append the single INSERT of append-stream.sql can take: one stream, nothing but events. */
export function takesFastPath(requests: AppendRequest[]): requests is [AppendRequest] {
  const [request] = requests;
  return requests.length === 1 && !request!.claims?.length && !request!.releases?.length && !request!.preconditions?.length;
}

/** The parameters of append-stream.sql. */
export function appendStreamParameters(request: AppendRequest): unknown[] {
  return [
    request.stream,
    String(request.expectedVersion ?? 'any'),
    request.events.map((event) => event.id),
    request.events.map((event) => event.type),
    JSON.stringify(request.events.map((event) => event.data)),
    JSON.stringify(request.events.map((event) => event.metadata ?? null)),
  ];
}

/** The unique violations after which append_events() must decide: an id or a version taken. */
function isTakenElsewhere(error: unknown): boolean {
  const { code, constraint } = error as { code?: string; constraint?: string };
  return code === '23505' && (constraint === 'events_id_key' || constraint === 'events_stream_version_key');
}

/**
 * The fast path: one statement. Undefined when it wrote nothing (the expected version does not
 * hold, an id is in the log already, the version was taken in between): append_events() then
 * decides and explains, seeing everything committed since.
 */
async function appendToStream(pool: pg.Pool, request: AppendRequest): Promise<AppendRow[] | undefined> {
  const client = await pool.connect();
  let release: (error?: Error) => void = () => client.release();
  try {
    const { rows } = await client.query<AppendRow>({ name: 'cse_append_stream', text: APPEND_STREAM_SQL, values: appendStreamParameters(request) });
    return rows.length > 0 ? rows : undefined;
  } catch (error) {
    try {
      await client.query(RELEASE_POSITION_LOCK_SQL);
    } catch (cleanupError) {
      // A connection that cannot say whether it holds the lock is closed: that releases it.
      release = () => client.release(cleanupError as Error);
    }
    if (isTakenElsewhere(error)) return undefined;
    throw error;
  } finally {
    release();
  }
}

export async function append(pool: pg.Pool, requests: AppendRequest[]): Promise<AppendedEvent[]> {
  const nonEmpty = requests.filter((request) => request.events.length > 0);
  if (nonEmpty.length === 0) return [];
  const streamOfEvent = nonEmpty.flatMap((request) => request.events.map(() => request.stream));
  let rows: AppendRow[] | undefined;
  try {
    if (takesFastPath(nonEmpty)) rows = await appendToStream(pool, nonEmpty[0]);
    rows ??= (await pool.query<AppendRow>({ name: 'cse_append', text: APPEND_SQL, values: appendParameters(nonEmpty) })).rows;
  } catch (error) {
    throw translateError(error);
  }
  return rows.map((row, index) => ({
    id: row.event_id,
    stream: streamOfEvent[index]!,
    streamVersion: row.stream_version,
    globalPosition: toNumber(row.global_position),
    recordedAt: row.recorded_at,
    duplicate: row.duplicate,
  }));
}
