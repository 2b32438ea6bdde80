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

export async function append(pool: pg.Pool, requests: AppendRequest[]): Promise<AppendedEvent[]> {
  const nonEmpty = requests.filter((request) => request.events.length > 0);
  if (nonEmpty.length === 0) return [];
  const streamOfEvent = nonEmpty.flatMap((request) => request.events.map(() => request.stream));
  let rows: AppendRow[];
  try {
    ({ rows } = await pool.query<AppendRow>({ name: 'cse_append', text: APPEND_SQL, values: appendParameters(nonEmpty) }));
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
