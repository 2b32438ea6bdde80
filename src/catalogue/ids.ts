/**
 * The id an event introduces, by the allocator kind it comes from (ID_KINDS): the new aggregate's
 * id, or a new row's inside one. A producer gets these from the store's allocator
 * (`allocateIds`); a log appended from elsewhere (a restore of an export) brings its own, past
 * which the allocator must then go.
 */
import type { CatalogueEvent, EventType } from './events.js';
import type { IdKind } from './kinds.js';

const INTRODUCED: Partial<Record<EventType, [field: string, kind: IdKind]>> = {
  NamespaceCreated: ['namespace_id', 'namespace'],
  NamespaceRoleMappingAdded: ['id', 'namespace_role_mapping'],
  NamespaceRoleGranted: ['id', 'namespace_role_mapping_v2'],
  EnvironmentCreated: ['environment_id', 'environment'],
  SpecificationRegistered: ['specification_id', 'specification'],
  BuildScheduled: ['build_id', 'build'],
  ArtifactStored: ['build_artifact_id', 'build_artifact'],
  SolveScheduled: ['solve_id', 'solve'],
  CondaChannelRegistered: ['channel_id', 'conda_channel'],
  CondaPackageRegistered: ['package_id', 'conda_package'],
  CondaPackageBuildRegistered: ['conda_package_build_id', 'conda_package_build'],
  SettingStored: ['id', 'keyvaluestore'],
  WorkerInitialized: ['id', 'worker'],
};

export function idIntroduced(event: Pick<CatalogueEvent, 'type' | 'data'>): { kind: IdKind; id: number } | undefined {
  const introduced = INTRODUCED[event.type];
  if (!introduced) return undefined;
  const id = (event.data as Record<string, unknown>)[introduced[0]];
  return typeof id === 'number' ? { kind: introduced[1], id } : undefined;
}
