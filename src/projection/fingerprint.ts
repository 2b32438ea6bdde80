/**
 * A projection's fingerprint: its version and a digest of its tables' definitions as the
 * migrations left them. Recorded when the projection is built; `rebuild-projections` without
 * names rebuilds the projections whose fingerprint changed (a new handler version, a migration
 * that changed one of its tables).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { ProjectionDefinition } from './definition.js';
import { readTableDefinitions } from './table-definition.js';

export async function fingerprintOf(client: pg.ClientBase, projection: ProjectionDefinition, schema = 'public'): Promise<string> {
  const definitions = await readTableDefinitions(client, schema, [...projection.tables].sort());
  // The DDL only, field by field: owners and grants are no reason to rebuild, and fingerprints
  // recorded before a field was added to TableDefinition stay valid.
  const ddl = definitions.map(({ table, sequences, create, ownership, finish }) => ({ table, sequences, create, ownership, finish }));
  const digest = createHash('sha256').update(JSON.stringify(ddl)).digest('hex').slice(0, 16);
  return `v${projection.version}:${digest}`;
}

/** The projection version a fingerprint records (`v<version>:<digest>`), if it records one. */
export function fingerprintVersion(fingerprint: string | null): number | undefined {
  const match = /^v(\d+):/.exec(fingerprint ?? '');
  return match ? Number(match[1]) : undefined;
}

/** Why a recorded fingerprint differs from the current one, in words; undefined when they match. */
export function fingerprintChange(recorded: string | null, current: string): string | undefined {
  if (recorded === current) return undefined;
  if (!recorded) return 'never built with a recorded fingerprint';
  const [recordedVersion, recordedSchema] = recorded.split(':');
  const [currentVersion, currentSchema] = current.split(':');
  const reasons: string[] = [];
  if (recordedVersion !== currentVersion) reasons.push(`version ${recordedVersion} -> ${currentVersion}`);
  if (recordedSchema !== currentSchema) reasons.push('table definition changed');
  return reasons.join(', ');
}

/** Records the fingerprint of projections that have none yet (first build by catch-up or serve). */
export async function recordMissingFingerprints(pool: pg.Pool, projections: ProjectionDefinition[]): Promise<void> {
  const client = await pool.connect();
  try {
    for (const projection of projections) {
      const fingerprint = await fingerprintOf(client, projection);
      await client.query('UPDATE event_store.projections SET fingerprint = $2 WHERE name = $1 AND fingerprint IS NULL', [projection.name, fingerprint]);
    }
  } finally {
    client.release();
  }
}
