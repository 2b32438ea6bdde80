/**
 * environment, from the environment stream, plus the two events of other aggregates that change
 * environment rows: a namespace's soft delete and the purge of a build that is some
 * environment's current build.
 */
import { defineProjection } from '../src/projection/definition.js';

export const environments = defineProjection({
  name: 'environments',
  version: 1,
  group: 'conda-store',
  tables: ['environment'],
  handlers: {
    // current_build_id stays NULL until EnvironmentCurrentBuildSet (the first build does not exist yet).
    EnvironmentCreated: ({ data }) => [
      {
        op: 'insert',
        table: 'environment',
        row: {
          id: data.environment_id,
          namespace_id: data.namespace_id,
          name: data.name,
          current_build_id: null,
          deleted_on: null,
          description: data.description ?? null,
        },
      },
    ],

    EnvironmentDescriptionUpdated: ({ data }) => [
      { op: 'update', table: 'environment', where: { id: data.environment_id }, set: { description: data.description } },
    ],

    EnvironmentCurrentBuildSet: ({ data }) => [
      { op: 'update', table: 'environment', where: { id: data.environment_id }, set: { current_build_id: data.current_build_id } },
    ],

    // The builds projection stamps the environment's builds with the same time.
    EnvironmentDeleted: ({ data }) => [
      { op: 'update', table: 'environment', where: { id: data.environment_id }, set: { deleted_on: data.deleted_on } },
    ],

    // Its builds are purged already (append-time rule).
    EnvironmentPurged: ({ data }) => [{ op: 'delete', table: 'environment', where: { id: data.environment_id } }],

    // conda-store's delete_namespace stamps every environment of the namespace with one time,
    // including one already deleted on its own (its earlier stamp is overwritten).
    NamespaceDeleted: ({ data }) => [
      { op: 'update', table: 'environment', where: { namespace_id: data.namespace_id }, set: { deleted_on: data.deleted_on } },
    ],

    // environment.current_build_id references build.id without ON DELETE: the pointer to a
    // purged build is cleared first. The runner applies this projection's changes for an event
    // before those of `builds` (condaStoreProjections order), so this precedes the build's delete.
    BuildPurged: ({ data }) => [
      { op: 'update', table: 'environment', where: { current_build_id: data.build_id }, set: { current_build_id: null } },
    ],
  },
});
