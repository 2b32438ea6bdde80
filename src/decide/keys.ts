/**
 * What each event claims, releases and requires of other aggregates, so that an event accepted
 * into the log always projects: the unique constraints and foreign keys of conda-store's tables
 * are checked here, atomically with the append (events.md, "Identity and determinism").
 * Pure: event in, key changes out; the log applies them in the append's transaction.
 */
import type { CatalogueEvent, EventData, EventType } from '../catalogue/index.js';
import type { KeyClaim, KeyRelease, Precondition } from '../log/types.js';

export interface KeyChanges {
  claims: KeyClaim[];
  releases: KeyRelease[];
  preconditions: Precondition[];
  /** The event creates its aggregate: it must be the first event of its stream. */
  creates: boolean;
}

/** Key names, one per unique constraint or primary key the projections rely on. */
export const KEY = {
  stream: 'stream',
  namespaceName: 'namespace.name',
  environmentName: 'environment.namespace_name',
  specificationSha256: 'specification.sha256',
  channelName: 'conda_channel.name',
  package: 'conda_package.channel_name_version',
  packageBuild: 'conda_package_build.unique',
  packageBuildId: 'conda_package_build.id',
  roleMappingId: 'namespace_role_mapping.id',
  roleGrantId: 'namespace_role_mapping_v2.id',
  artifactId: 'build_artifact.id',
  settingId: 'keyvaluestore.id',
} as const;

const streams = {
  namespace: (id: number) => `namespace-${id}`,
  environment: (id: number) => `environment-${id}`,
  specification: (id: number) => `specification-${id}`,
  build: (id: number) => `build-${id}`,
  channel: (id: number) => `conda_channel-${id}`,
  package: (id: number) => `conda_package-${id}`,
  solve: (id: number) => `solve-${id}`,
};

/** A composite key as one string; JSON keeps the parts apart whatever characters they hold. */
const tuple = (...parts: unknown[]) => JSON.stringify(parts);

const exists = (stream: string, what = stream): Precondition => ({ kind: 'exists', stream, message: `${what} does not exist` });
const packageBuildExists = (id: number): Precondition => ({
  kind: 'key',
  name: KEY.packageBuildId,
  value: String(id),
  message: `conda_package_build ${id} does not exist`,
});

/** An event's key changes, from its data, its stream and its id. */
type Rule<T extends EventType> = (data: EventData<T>, stream: string, id: string) => Partial<KeyChanges>;
type Rules = { [T in EventType]: Rule<T> };

/** Every non-creating event of an aggregate needs the aggregate to exist (and not be purged). */
const self: Rule<EventType> = (_data, stream) => ({ preconditions: [exists(stream)] });

const rules: Rules = {
  NamespaceCreated: (d, stream) => ({
    creates: true,
    claims: [{ name: KEY.stream, value: stream }, { name: KEY.namespaceName, value: d.name }],
  }),
  NamespaceMetadataUpdated: self,
  NamespaceRoleMappingAdded: (d, stream, id) => ({ preconditions: [exists(stream)], claims: [{ name: KEY.roleMappingId, value: String(d.id), parent: id }] }),
  NamespaceRoleMappingRemoved: (d, stream) => ({
    preconditions: [exists(stream), { kind: 'key', name: KEY.roleMappingId, value: String(d.id), holder: stream, message: `namespace_role_mapping ${d.id} is not a mapping of ${stream}` }],
    releases: [{ name: KEY.roleMappingId, value: String(d.id) }],
  }),
  NamespaceRoleGranted: (d, stream) => ({
    preconditions: [exists(stream), exists(streams.namespace(d.other_namespace_id), `namespace ${d.other_namespace_id}`)],
    // A grant of the same pair again may keep its id (the row's role changes); another pair may not.
    claims: [{ name: KEY.roleGrantId, value: String(d.id), parent: streams.namespace(d.other_namespace_id) }],
  }),
  NamespaceRoleRevoked: self,
  NamespaceDeleted: self,
  NamespacePurged: (_d, stream) => ({
    preconditions: [exists(stream), { kind: 'no_children', stream, message: `${stream} still has environments: purge them first` }],
    releases: [{ name: KEY.stream }, { name: KEY.namespaceName }, { name: KEY.roleMappingId }, { name: KEY.roleGrantId }],
  }),

  EnvironmentCreated: (d, stream) => ({
    creates: true,
    preconditions: [exists(streams.namespace(d.namespace_id), `namespace ${d.namespace_id}`)],
    claims: [
      { name: KEY.stream, value: stream, parent: streams.namespace(d.namespace_id) },
      { name: KEY.environmentName, value: tuple(d.namespace_id, d.name) },
    ],
  }),
  EnvironmentDescriptionUpdated: self,
  EnvironmentCurrentBuildSet: (d, stream) => ({
    preconditions: [
      exists(stream),
      { kind: 'child_of', stream: streams.build(d.current_build_id), parent: stream, message: `build ${d.current_build_id} is not a build of ${stream}` },
    ],
  }),
  EnvironmentDeleted: self,
  EnvironmentPurged: (_d, stream) => ({
    preconditions: [exists(stream), { kind: 'no_children', stream, message: `${stream} still has builds: purge them first` }],
    releases: [{ name: KEY.stream }, { name: KEY.environmentName }],
  }),

  SpecificationRegistered: (d, stream) => ({
    creates: true,
    claims: [{ name: KEY.stream, value: stream }, { name: KEY.specificationSha256, value: d.sha256 }],
  }),

  BuildScheduled: (d, stream) => ({
    creates: true,
    preconditions: [
      exists(streams.environment(d.environment_id), `environment ${d.environment_id}`),
      exists(streams.specification(d.specification_id), `specification ${d.specification_id}`),
    ],
    claims: [{ name: KEY.stream, value: stream, parent: streams.environment(d.environment_id) }],
  }),
  BuildStarted: self,
  BuildStatusInfoUpdated: self,
  BuildPackagesRecorded: (d, stream) => ({ preconditions: [exists(stream), ...d.conda_package_build_ids.map(packageBuildExists)] }),
  ArtifactStored: (d, stream, id) => ({ preconditions: [exists(stream)], claims: [{ name: KEY.artifactId, value: String(d.build_artifact_id), parent: id }] }),
  ArtifactDeleted: (d, stream) => ({
    preconditions: [exists(stream), { kind: 'key', name: KEY.artifactId, value: String(d.build_artifact_id), holder: stream, message: `build_artifact ${d.build_artifact_id} is not an artifact of ${stream}` }],
    releases: [{ name: KEY.artifactId, value: String(d.build_artifact_id) }],
  }),
  BuildCompleted: self,
  BuildFailed: self,
  BuildCanceled: self,
  BuildDeleted: self,
  BuildSizeUpdated: self,
  BuildPurged: (_d, stream) => ({ preconditions: [exists(stream)], releases: [{ name: KEY.stream }, { name: KEY.artifactId }] }),

  CondaChannelRegistered: (d, stream) => ({
    creates: true,
    claims: [{ name: KEY.stream, value: stream }, { name: KEY.channelName, value: d.name }],
  }),
  CondaChannelSynced: self,
  CondaPackageRegistered: (d, stream) => ({
    creates: true,
    preconditions: [exists(streams.channel(d.channel_id), `conda_channel ${d.channel_id}`)],
    claims: [{ name: KEY.stream, value: stream }, { name: KEY.package, value: tuple(d.channel_id, d.name, d.version) }],
  }),
  CondaPackageBuildRegistered: (d, stream, id) => ({
    preconditions: [exists(stream), exists(streams.channel(d.channel_id), `conda_channel ${d.channel_id}`)],
    claims: [
      { name: KEY.packageBuildId, value: String(d.conda_package_build_id), parent: id },
      // PostgreSQL's unique constraints treat NULLs as distinct: without a subdir there is no key.
      ...(d.subdir == null
        ? []
        : [{ name: KEY.packageBuild, value: tuple(d.channel_id, d.package_id, d.subdir, d.build, d.build_number, d.sha256), parent: id }]),
    ],
  }),

  SolveScheduled: (d, stream) => ({
    creates: true,
    preconditions: [exists(streams.specification(d.specification_id), `specification ${d.specification_id}`)],
    claims: [{ name: KEY.stream, value: stream }],
  }),
  SolveStarted: self,
  SolveCompleted: (d, stream) => ({ preconditions: [exists(stream), ...d.conda_package_build_ids.map(packageBuildExists)] }),

  StorageUsageReported: () => ({}),
  // A setting stored again may keep its id (the row's value changes); another setting may not.
  SettingStored: (d) => ({ claims: [{ name: KEY.settingId, value: String(d.id), parent: tuple(d.prefix, d.key) }] }),
  WorkerInitialized: () => ({}),
};

export function keyChanges(event: CatalogueEvent, stream: string, id: string): KeyChanges {
  const rule = rules[event.type] as Rule<EventType>;
  const changes = rule(event.data as never, stream, id);
  return {
    claims: changes.claims ?? [],
    releases: changes.releases ?? [],
    preconditions: changes.preconditions ?? [],
    creates: changes.creates ?? false,
  };
}
