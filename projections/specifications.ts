/**
 * specification, from the specification stream.
 * v2: writes is_lockfile (the column conda-store's alembic revision bf065abf375b added; here
 * migration 20260101000350 plus `rebuild-projections`, see the README's worked example).
 */
import { defineProjection } from '../src/projection/definition.js';

export const specifications = defineProjection({
  name: 'specifications',
  version: 2,
  group: 'conda-store',
  tables: ['specification'],
  handlers: {
    SpecificationRegistered: ({ data }) => [
      {
        op: 'insert',
        table: 'specification',
        row: {
          id: data.specification_id,
          name: data.name,
          spec: data.spec,
          sha256: data.sha256,
          // conda-store's default is utcnow at insert; a projection may not read the clock, so
          // an event without created_on gives NULL (the migrated column is nullable). Producers
          // should send it.
          created_on: data.created_on ?? null,
          // Required by the catalogue; `false` (the column's server default) guards older data.
          is_lockfile: data.is_lockfile ?? false,
        },
      },
    ],
  },
});
