/** specification, from the specification stream. */
import { defineProjection } from '../src/projection/definition.js';

export const specifications = defineProjection({
  name: 'specifications',
  version: 1,
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
