/**
 * build, build_artifact and build_conda_package_build, from the build stream, plus the soft
 * deletes of a namespace and of an environment, which stamp their builds.
 */
import { defineProjection, type Row } from '../src/projection/definition.js';

/**
 * How a build ends: status, ended_on and the reason, NULL when the event gives none (absent and
 * null mean the same in the catalogue), as conda-store's set_build_failed and set_build_canceled
 * write `status_info = status_info` with None by default (conda-store-tables.md §3: "FAILED
 * (ended_on, status_info)"). Until version 3 a reason set earlier (BuildStatusInfoUpdated) was kept.
 */
function ending(status: 'FAILED' | 'CANCELED', data: { ended_on: string; status_info?: string | null }): Row {
  return { status, ended_on: data.ended_on, status_info: data.status_info ?? null };
}

export const builds = defineProjection({
  name: 'builds',
  version: 3,
  group: 'conda-store',
  upsertKeys: { build_conda_package_build: [['build_id', 'conda_package_build_id']] },
  tables: ['build', 'build_artifact', 'build_conda_package_build'],
  handlers: {
    // Every column is written, the server default of build_key_version included, so the row
    // never depends on table defaults. size 0 is conda-store's client-side default.
    BuildScheduled: ({ data }) => [
      {
        op: 'insert',
        table: 'build',
        row: {
          id: data.build_id,
          specification_id: data.specification_id,
          environment_id: data.environment_id,
          status: 'QUEUED',
          size: 0,
          scheduled_on: data.scheduled_on,
          started_on: null,
          ended_on: null,
          deleted_on: null,
          status_info: null,
          build_key_version: data.build_key_version,
          hash: data.hash ?? null,
        },
      },
    ],

    BuildStarted: ({ data }) => [
      { op: 'update', table: 'build', where: { id: data.build_id }, set: { status: 'BUILDING', started_on: data.started_on } },
    ],

    BuildStatusInfoUpdated: ({ data }) => [
      { op: 'update', table: 'build', where: { id: data.build_id }, set: { status_info: data.status_info } },
    ],

    // One row per package build. `update: []` asks the runner for ON CONFLICT DO NOTHING (it
    // turns an empty update list into DO NOTHING): recording a link twice is harmless.
    BuildPackagesRecorded: ({ data }) =>
      data.conda_package_build_ids.map((id) => ({
        op: 'upsert' as const,
        table: 'build_conda_package_build',
        row: { build_id: data.build_id, conda_package_build_id: id },
        key: ['build_id', 'conda_package_build_id'],
        update: [],
      })),

    // A row per event. conda-store's Storage.set inserts one only when the build has none with
    // that key (conda-store-tables.md, build_artifact), so a producer publishes ArtifactStored when
    // it inserted; checking here would read the table for every event (it has no index on
    // (build_id, key), and must not get one: its indexes are conda-store's).
    ArtifactStored: ({ data }) => [
      {
        op: 'insert',
        table: 'build_artifact',
        row: { id: data.build_artifact_id, build_id: data.build_id, artifact_type: data.artifact_type, key: data.key },
      },
    ],

    // The build's own artifact only: the log checks that the id exists, not whose it is (version
    // 2: version 1 deleted another build's artifact of that id).
    ArtifactDeleted: ({ data }) => [{ op: 'delete', table: 'build_artifact', where: { id: data.build_artifact_id, build_id: data.build_id } }],

    // Without a size the build keeps the one it has.
    BuildCompleted: ({ data }) => [
      {
        op: 'update',
        table: 'build',
        where: { id: data.build_id },
        set:
          data.size == null
            ? { status: 'COMPLETED', ended_on: data.ended_on }
            : { status: 'COMPLETED', ended_on: data.ended_on, size: data.size },
      },
    ],

    BuildFailed: ({ data }) => [{ op: 'update', table: 'build', where: { id: data.build_id }, set: ending('FAILED', data) }],

    BuildCanceled: ({ data }) => [{ op: 'update', table: 'build', where: { id: data.build_id }, set: ending('CANCELED', data) }],

    BuildDeleted: ({ data }) => [
      { op: 'update', table: 'build', where: { id: data.build_id }, set: { deleted_on: data.deleted_on } },
    ],

    BuildSizeUpdated: ({ data }) => [{ op: 'update', table: 'build', where: { id: data.build_id }, set: { size: data.size } }],

    // Children first: build_artifact.build_id has no ON DELETE (the package links would cascade,
    // but deleting them explicitly keeps the changes readable and independent of cascades).
    // An environment pointing at the build has been cleared by the environments projection.
    BuildPurged: ({ data }) => [
      { op: 'delete', table: 'build_artifact', where: { build_id: data.build_id } },
      { op: 'delete', table: 'build_conda_package_build', where: { build_id: data.build_id } },
      { op: 'delete', table: 'build', where: { id: data.build_id } },
    ],

    // conda-store's delete_environment stamps the environment and all its builds with one time
    // (a build deleted earlier on its own gets the new stamp too).
    EnvironmentDeleted: ({ data }) => [
      { op: 'update', table: 'build', where: { environment_id: data.environment_id }, set: { deleted_on: data.deleted_on } },
    ],

    // delete_namespace does the same for every build of every environment of the namespace. The
    // environments are reached through the environment table (read only; it belongs to the
    // environments projection, whose rows for this namespace exist until they are purged).
    NamespaceDeleted: ({ data }) => [
      {
        op: 'sql',
        table: 'build',
        text:
          'UPDATE build SET deleted_on = $1::timestamp ' +
          'WHERE environment_id IN (SELECT id FROM environment WHERE namespace_id = $2::integer)',
        values: [data.deleted_on, data.namespace_id],
      },
    ],
  },
});
