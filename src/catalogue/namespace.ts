import { Arn, Id, JsonObject, Name, OneOf, Optional, ROLES, Timestamp } from './common.js';
import { aggregate } from './define.js';

const namespace = aggregate('namespace', 'namespace_id');
const role = () => OneOf(ROLES, { description: 'admin, viewer or developer; editor is an alias of developer' });

export const namespaceEvents = {
  NamespaceCreated: namespace.event('Inserts a namespace row.', {
    namespace_id: Id(),
    name: Name(),
    metadata_: Optional(JsonObject({ description: 'free-form metadata; absent means {}' })),
  }),
  NamespaceMetadataUpdated: namespace.event('Replaces namespace.metadata_.', {
    namespace_id: Id(),
    metadata_: JsonObject(),
  }),
  NamespaceRoleMappingAdded: namespace.event('Inserts a namespace_role_mapping row (v1: a role for an entity ARN).', {
    namespace_id: Id(),
    id: Id({ description: 'namespace_role_mapping.id' }),
    entity: Arn({ description: 'ARN <namespace-glob>/<name-glob>, * allowed (conda-store ARN_ALLOWED)' }),
    role: role(),
  }),
  NamespaceRoleMappingRemoved: namespace.event('Deletes a namespace_role_mapping row.', {
    namespace_id: Id(),
    id: Id({ description: 'namespace_role_mapping.id' }),
  }),
  NamespaceRoleGranted: namespace.event(
    'Inserts or updates the namespace_role_mapping_v2 row of (namespace_id, other_namespace_id).',
    {
      namespace_id: Id({ description: 'the namespace that grants access' }),
      id: Id({ description: 'namespace_role_mapping_v2.id' }),
      other_namespace_id: Id({ description: 'the namespace that receives access' }),
      role: role(),
    },
  ),
  NamespaceRoleRevoked: namespace.event('Deletes the namespace_role_mapping_v2 row of (namespace_id, other_namespace_id).', {
    namespace_id: Id(),
    other_namespace_id: Id(),
  }),
  NamespaceDeleted: namespace.event('Soft delete: sets deleted_on on the namespace, its environments and their builds.', {
    namespace_id: Id(),
    deleted_on: Timestamp(),
  }),
  NamespacePurged: namespace.event('Deletes the namespace row (after its environments are purged).', {
    namespace_id: Id(),
  }),
};
