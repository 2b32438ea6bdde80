/**
 * One realistic, valid data object per event type, telling one story: namespace 1 ("default")
 * holds environment 1 ("python-data"), built as build 42 from specification 1 with package
 * builds of conda-forge (channel 1). Tests of other rooms reuse these.
 */
import crypto from 'node:crypto';
import { catalogue, type Envelope, type EventData, type EventType } from '../../src/catalogue/index.js';

const spec = {
  name: 'python-data',
  channels: ['conda-forge'],
  dependencies: ['python=3.12', 'numpy', 'pandas'],
};

export const samples: { [T in EventType]: EventData<T> } = {
  NamespaceCreated: { namespace_id: 1, name: 'default', metadata_: { owner: 'data-team' } },
  NamespaceMetadataUpdated: { namespace_id: 1, metadata_: { owner: 'platform-team', cost_center: 42 } },
  NamespaceRoleMappingAdded: { namespace_id: 1, id: 1, entity: 'data-team/*', role: 'developer' },
  NamespaceRoleMappingRemoved: { namespace_id: 1, id: 1 },
  NamespaceRoleGranted: { namespace_id: 1, id: 1, other_namespace_id: 2, role: 'viewer' },
  NamespaceRoleRevoked: { namespace_id: 1, other_namespace_id: 2 },
  NamespaceDeleted: { namespace_id: 1, deleted_on: '2024-03-09T17:45:00.250000Z' },
  NamespacePurged: { namespace_id: 1 },

  EnvironmentCreated: { environment_id: 1, namespace_id: 1, name: 'python-data', description: 'Python with the PyData stack' },
  EnvironmentDescriptionUpdated: { environment_id: 1, description: 'Python 3.12 with numpy and pandas' },
  EnvironmentCurrentBuildSet: { environment_id: 1, current_build_id: 42 },
  EnvironmentDeleted: { environment_id: 1, deleted_on: '2024-03-09T17:45:00.250000Z' },
  EnvironmentPurged: { environment_id: 1 },

  SpecificationRegistered: {
    specification_id: 1,
    name: 'python-data',
    spec,
    sha256: 'c1f2f6e3d0b54a4f8b2c36d9c7e1f0a59e0c3b7d2a4f6e8c1b3d5f7a9c2e4b6d',
    created_on: '2024-03-02T10:00:00.123456Z',
    is_lockfile: false,
  },

  BuildScheduled: {
    build_id: 42,
    environment_id: 1,
    specification_id: 1,
    scheduled_on: '2024-03-02T10:00:00.123456Z',
    build_key_version: 3,
    hash: '5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b',
  },
  BuildStarted: { build_id: 42, started_on: '2024-03-02T10:00:05Z' },
  BuildStatusInfoUpdated: { build_id: 42, status_info: 'solving environment' },
  BuildPackagesRecorded: { build_id: 42, conda_package_build_ids: [1001, 1002] },
  ArtifactStored: {
    build_id: 42,
    build_artifact_id: 7,
    artifact_type: 'LOGS',
    key: 'logs/5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b.log',
  },
  ArtifactDeleted: { build_id: 42, build_artifact_id: 7 },
  BuildCompleted: { build_id: 42, ended_on: '2024-03-02T10:04:31+00:00', size: 734_003_200 },
  BuildFailed: { build_id: 42, ended_on: '2024-03-02T10:01:12Z', status_info: 'conda solve failed: nothing provides numpy' },
  BuildCanceled: { build_id: 42, ended_on: '2024-03-02T10:01:12Z', status_info: 'build canceled by alice' },
  BuildDeleted: { build_id: 42, deleted_on: '2024-03-10T08:00:00Z' },
  BuildSizeUpdated: { build_id: 42, size: 0 },
  BuildPurged: { build_id: 42 },

  CondaChannelRegistered: { channel_id: 1, name: 'https://conda.anaconda.org/conda-forge' },
  CondaChannelSynced: { channel_id: 1, last_update: '2024-03-02T09:30:00Z' },
  CondaPackageRegistered: {
    package_id: 7,
    channel_id: 1,
    name: 'numpy',
    version: '1.26.4',
    license: 'BSD-3-Clause',
    license_family: 'BSD',
    summary: 'The fundamental package for scientific computing with Python.',
    description: null,
  },
  CondaPackageBuildRegistered: {
    conda_package_build_id: 1001,
    package_id: 7,
    channel_id: 1,
    build: 'py312h8753938_0',
    build_number: 0,
    depends: ['libblas >=3.9.0,<4.0a0', 'libcxx >=16', 'python >=3.12,<3.13.0a0', 'python_abi 3.12.* *_cp312'],
    constrains: ['numpy-base <0a0'],
    md5: '8a9bb0b4ab9c16b7b3ec6d8c1bd6c3b2',
    sha256: '1b2b9ac8b0fb8d1e5b2dbd4e9b2f7a3f0f4e2c6a8b1d3e5f7a9c0b2d4e6f8a1c',
    size: 6_985_724,
    subdir: 'osx-arm64',
    timestamp: 1_707_225_876_123,
  },

  SolveScheduled: { solve_id: 5, specification_id: 1, scheduled_on: '2024-03-02T10:00:00Z' },
  SolveStarted: { solve_id: 5, started_on: '2024-03-02T10:00:01Z' },
  SolveCompleted: { solve_id: 5, ended_on: '2024-03-02T10:00:09Z', conda_package_build_ids: [1001, 1002] },

  StorageUsageReported: { disk_usage: 12_884_901_888, free_storage: 53_687_091_200, total_storage: 107_374_182_400 },
  SettingStored: { id: 3, prefix: 'setting/default/python-data', key: 'conda_included_packages', value: ['ipykernel'] },
  WorkerInitialized: { id: 1, initialized: true },
};

/** A valid envelope for the sample (or the given data) of a type, with a fresh id and the right stream. */
export function envelopeFor<T extends EventType>(type: T, data: EventData<T> = samples[type], extra: Partial<Envelope> = {}): Envelope {
  const stream = (catalogue[type].streamOf as (data: unknown) => string)(data);
  return { id: crypto.randomUUID(), type, stream, data, ...extra } as Envelope;
}
