/** conda_channel, conda_package and conda_package_build, from the channel and package streams. */
import { defineProjection } from '../src/projection/definition.js';

export const channels = defineProjection({
  name: 'channels',
  version: 2,
  group: 'conda-store',
  tables: ['conda_channel', 'conda_package', 'conda_package_build'],
  handlers: {
    // last_update stays NULL until the first sync.
    CondaChannelRegistered: ({ data }) => [
      { op: 'insert', table: 'conda_channel', row: { id: data.channel_id, name: data.name, last_update: null } },
    ],

    CondaChannelSynced: ({ data }) => [
      { op: 'update', table: 'conda_channel', where: { id: data.channel_id }, set: { last_update: data.last_update } },
    ],

    CondaPackageRegistered: ({ data }) => [
      {
        op: 'insert',
        table: 'conda_package',
        row: {
          id: data.package_id,
          channel_id: data.channel_id,
          license: data.license ?? null,
          license_family: data.license_family ?? null,
          name: data.name,
          version: data.version,
          summary: data.summary ?? null,
          description: data.description ?? null,
        },
      },
    ],

    // depends is stored as given, a JSON array, but an empty one as the JSON string "", as
    // conda-store's channel sync stores it (conda-store-tables.md, conda_package_build.depends);
    // version 1 stored [] (found by a review). Optional fields absent or null give NULL columns.
    CondaPackageBuildRegistered: ({ data }) => [
      {
        op: 'insert',
        table: 'conda_package_build',
        row: {
          id: data.conda_package_build_id,
          package_id: data.package_id,
          channel_id: data.channel_id,
          build: data.build,
          build_number: data.build_number,
          constrains: data.constrains ?? null,
          depends: data.depends.length === 0 ? '' : data.depends,
          md5: data.md5,
          sha256: data.sha256,
          size: data.size,
          subdir: data.subdir ?? null,
          timestamp: data.timestamp ?? null,
        },
      },
    ],
  },
});
