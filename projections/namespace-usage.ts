/**
 * namespace_usage: a read model conda-store does not have, built from old history by a migration
 * plus `rebuild-projections` (the README's second worked example): per namespace, how many builds
 * were ever scheduled, how many ever completed, and the total size of its completed builds that
 * are still there (a build's BuildSizeUpdated changes it, its purge takes it out).
 *
 * It is a group of its own (no foreign keys to conda-store's tables), so it is owned, applied and
 * rebuilt independently. Events name a build's environment, not its namespace: two small tables
 * of its own remember which namespace an environment and a build belong to.
 *
 * Version 2: a purged environment's and build's rows of those two tables go with them. Version 1
 * kept them for ever (no event names a purged environment or build again), two rows of integers
 * per environment and build ever created; the counts of namespace_usage are the same. A rebuild
 * (`rebuild-projections` names it: version v1 -> v2) drops the rows version 1 left.
 *
 * Version 3: a purged build's size leaves total_size, as a resize to 0 does (found by a review:
 * a build deleted on its own was sized 0 first, one purged with its environment was not, so its
 * bytes stayed counted for ever).
 */
import { defineProjection } from '../src/projection/definition.js';

const COUNT_BUILD = `
  WITH owner AS (
    INSERT INTO namespace_usage_build (build_id, namespace_id, completed, size)
    SELECT $1::integer, e.namespace_id, false, 0 FROM namespace_usage_environment e WHERE e.environment_id = $2::integer
    RETURNING namespace_id
  )
  UPDATE namespace_usage u SET builds = u.builds + 1 FROM owner WHERE u.namespace_id = owner.namespace_id`;

const COMPLETE_BUILD = `
  WITH done AS (
    UPDATE namespace_usage_build SET completed = true, size = coalesce($2::bigint, size)
    WHERE build_id = $1::integer AND NOT completed
    RETURNING namespace_id, size
  )
  UPDATE namespace_usage u SET completed_builds = u.completed_builds + 1, total_size = u.total_size + done.size
  FROM done WHERE u.namespace_id = done.namespace_id`;

const RESIZE_BUILD = `
  WITH old AS (SELECT namespace_id, size, completed FROM namespace_usage_build WHERE build_id = $1::integer),
  resized AS (UPDATE namespace_usage_build SET size = $2::bigint WHERE build_id = $1::integer RETURNING build_id)
  UPDATE namespace_usage u SET total_size = u.total_size - old.size + $2::bigint
  FROM old WHERE u.namespace_id = old.namespace_id AND old.completed AND EXISTS (SELECT 1 FROM resized)`;

const PURGE_BUILD = `
  WITH purged AS (DELETE FROM namespace_usage_build WHERE build_id = $1::integer RETURNING namespace_id, completed, size)
  UPDATE namespace_usage u SET total_size = u.total_size - purged.size
  FROM purged WHERE u.namespace_id = purged.namespace_id AND purged.completed`;

export const namespaceUsage = defineProjection({
  name: 'namespace_usage',
  version: 3,
  group: 'namespace_usage',
  tables: ['namespace_usage', 'namespace_usage_environment', 'namespace_usage_build'],
  handlers: {
    NamespaceCreated: ({ data }) => [
      { op: 'insert', table: 'namespace_usage', row: { namespace_id: data.namespace_id, builds: 0, completed_builds: 0, total_size: 0 } },
    ],
    NamespacePurged: ({ data }) => [{ op: 'delete', table: 'namespace_usage', where: { namespace_id: data.namespace_id } }],
    EnvironmentCreated: ({ data }) => [
      { op: 'insert', table: 'namespace_usage_environment', row: { environment_id: data.environment_id, namespace_id: data.namespace_id } },
    ],
    EnvironmentPurged: ({ data }) => [{ op: 'delete', table: 'namespace_usage_environment', where: { environment_id: data.environment_id } }],
    BuildScheduled: ({ data }) => [{ op: 'sql', table: 'namespace_usage', text: COUNT_BUILD, values: [data.build_id, data.environment_id] }],
    BuildCompleted: ({ data }) => [{ op: 'sql', table: 'namespace_usage', text: COMPLETE_BUILD, values: [data.build_id, data.size ?? null] }],
    BuildSizeUpdated: ({ data }) => [{ op: 'sql', table: 'namespace_usage', text: RESIZE_BUILD, values: [data.build_id, data.size] }],
    BuildPurged: ({ data }) => [{ op: 'sql', table: 'namespace_usage', text: PURGE_BUILD, values: [data.build_id] }],
  },
});
