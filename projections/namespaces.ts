/**
 * namespace, namespace_role_mapping (v1) and namespace_role_mapping_v2, from the namespace
 * stream. Pure: every value written comes from the event.
 *
 * The soft delete of a namespace also stamps its environments and their builds; those tables
 * belong to the environments and builds projections, which handle NamespaceDeleted themselves.
 */
import type { Role } from '../src/catalogue/index.js';
import { defineProjection } from '../src/projection/definition.js';

/** conda-store accepts `editor` as an alias and stores `developer` (v1 and v2 alike). */
function storedRole(role: Role): Exclude<Role, 'editor'> {
  return role === 'editor' ? 'developer' : role;
}

export const namespaces = defineProjection({
  name: 'namespaces',
  version: 2,
  group: 'conda-store',
  upsertKeys: { namespace_role_mapping_v2: [['namespace_id', 'other_namespace_id']] },
  tables: ['namespace', 'namespace_role_mapping', 'namespace_role_mapping_v2'],
  handlers: {
    NamespaceCreated: ({ data }) => [
      {
        op: 'insert',
        table: 'namespace',
        // metadata_ absent means conda-store's client-side default, `dict()`.
        row: { id: data.namespace_id, name: data.name, deleted_on: null, metadata_: data.metadata_ ?? {} },
      },
    ],

    NamespaceMetadataUpdated: ({ data }) => [
      { op: 'update', table: 'namespace', where: { id: data.namespace_id }, set: { metadata_: data.metadata_ } },
    ],

    NamespaceRoleMappingAdded: ({ data }) => [
      {
        op: 'insert',
        table: 'namespace_role_mapping',
        row: { id: data.id, namespace_id: data.namespace_id, entity: data.entity, role: storedRole(data.role) },
      },
    ],

    // The namespace's own mapping only: the log checks that the id exists, not whose it is
    // (version 2: version 1 deleted another namespace's mapping of that id).
    NamespaceRoleMappingRemoved: ({ data }) => [{ op: 'delete', table: 'namespace_role_mapping', where: { id: data.id, namespace_id: data.namespace_id } }],

    // One role per ordered pair (UNIQUE `_uc`): a second grant for the same pair changes the
    // role only, so the row keeps the id of the first grant, as conda-store's update of the
    // existing row does. The later event's `id` is then unused.
    NamespaceRoleGranted: ({ data }) => [
      {
        op: 'upsert',
        table: 'namespace_role_mapping_v2',
        row: {
          id: data.id,
          namespace_id: data.namespace_id,
          other_namespace_id: data.other_namespace_id,
          role: storedRole(data.role),
        },
        key: ['namespace_id', 'other_namespace_id'],
        update: ['role'],
      },
    ],

    NamespaceRoleRevoked: ({ data }) => [
      {
        op: 'delete',
        table: 'namespace_role_mapping_v2',
        where: { namespace_id: data.namespace_id, other_namespace_id: data.other_namespace_id },
      },
    ],

    NamespaceDeleted: ({ data }) => [
      { op: 'update', table: 'namespace', where: { id: data.namespace_id }, set: { deleted_on: data.deleted_on } },
    ],

    // Its environments are purged already (append-time rule); its role mappings, in both
    // directions for v2, would block the delete by foreign key, so they go first.
    NamespacePurged: ({ data }) => [
      { op: 'delete', table: 'namespace_role_mapping', where: { namespace_id: data.namespace_id } },
      { op: 'delete', table: 'namespace_role_mapping_v2', where: { namespace_id: data.namespace_id } },
      { op: 'delete', table: 'namespace_role_mapping_v2', where: { other_namespace_id: data.namespace_id } },
      { op: 'delete', table: 'namespace', where: { id: data.namespace_id } },
    ],
  },
});
