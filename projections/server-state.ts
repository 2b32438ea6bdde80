/** conda_store_configuration, keyvaluestore and worker, from the server-state streams. */
import { defineProjection } from '../src/projection/definition.js';

/**
 * keyvaluestore has no unique (prefix, key) in the migrated database (conda-store-tables.md §0),
 * so an upsert cannot name a conflict target. One statement updates the row of (prefix, key) if
 * there is one and inserts it otherwise: a setting stored twice keeps one row, with the id of
 * its first event and the latest value.
 */
const STORE_SETTING = `WITH updated AS (
  UPDATE keyvaluestore SET value = $4::json WHERE prefix = $2::varchar AND key = $3::varchar RETURNING id
)
INSERT INTO keyvaluestore (id, prefix, key, value)
SELECT $1::integer, $2::varchar, $3::varchar, $4::json
WHERE NOT EXISTS (SELECT 1 FROM updated)`;

export const serverState = defineProjection({
  name: 'server-state',
  version: 1,
  group: 'conda-store',
  upsertKeys: { conda_store_configuration: [['id']], worker: [['id']] },
  tables: ['conda_store_configuration', 'keyvaluestore', 'worker'],
  handlers: {
    // The singleton row, created lazily with id 1 as conda-store does.
    StorageUsageReported: ({ data }) => [
      {
        op: 'upsert',
        table: 'conda_store_configuration',
        row: { id: 1, disk_usage: data.disk_usage, free_storage: data.free_storage, total_storage: data.total_storage },
        key: ['id'],
        update: ['disk_usage', 'free_storage', 'total_storage'],
      },
    ],

    // A `sql` change's values reach PostgreSQL as they are, so the JSON value is serialised
    // here. A JSON null is stored as the JSON value `null`, as SQLAlchemy's JSON type does with
    // None (none_as_null=False), not as SQL NULL.
    SettingStored: ({ data }) => [
      {
        op: 'sql',
        table: 'keyvaluestore',
        text: STORE_SETTING,
        values: [data.id, data.prefix, data.key, JSON.stringify(data.value) ?? null],
        insertsId: data.id,
      },
    ],

    WorkerInitialized: ({ data }) => [
      { op: 'upsert', table: 'worker', row: { id: data.id, initialized: data.initialized }, key: ['id'], update: ['initialized'] },
    ],
  },
});
