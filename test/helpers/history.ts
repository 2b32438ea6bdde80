/**
 * A realistic conda-store history that uses every event type, in an order that conda-store could
 * produce: a channel sync, namespaces with role mappings, environments, specifications, a solve,
 * builds that complete, fail and are canceled, artifacts, soft deletes and purges, settings,
 * storage usage and workers. Ids are consistent, so every event passes the append-time rules.
 */
import { createHash } from 'node:crypto';
import type { Envelope, EventData, EventType } from '../../src/catalogue/index.js';
import { envelopeFor } from './samples.js';

/** Deterministic event ids, so two runs of the history are the same log. */
function idFor(n: number): string {
  const hex = createHash('sha256').update(`history-${n}`).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}

export function realisticHistory(): Envelope[] {
  const events: Envelope[] = [];
  const add = <T extends EventType>(type: T, data: EventData<T>) => {
    events.push(envelopeFor(type, data, { id: idFor(events.length) }));
  };
  const specA = { name: 'python-data', channels: ['conda-forge'], dependencies: ['python=3.12', 'numpy'] };
  const specB = { name: 'r-env', channels: ['defaults'], dependencies: ['r-base'], lockfile: { version: 1 } };

  add('CondaChannelRegistered', { channel_id: 1, name: 'https://conda.anaconda.org/conda-forge' });
  add('CondaChannelRegistered', { channel_id: 2, name: 'defaults' });
  add('CondaPackageRegistered', { package_id: 1, channel_id: 1, name: 'numpy', version: '1.26.4', license: 'BSD-3-Clause', license_family: 'BSD', summary: 'Array computing', description: 'NumPy is the fundamental package.' });
  add('CondaPackageRegistered', { package_id: 2, channel_id: 1, name: 'python', version: '3.12.1', license: 'Python-2.0' });
  add('CondaPackageRegistered', { package_id: 3, channel_id: 2, name: 'r-base', version: '4.3.2' });
  add('CondaPackageBuildRegistered', { conda_package_build_id: 1001, package_id: 1, channel_id: 1, build: 'py312h8753938_0', build_number: 0, depends: ['python >=3.12,<3.13.0a0', 'libblas >=3.9.0'], constrains: ['numpy-base <0a0'], md5: '8a9bb0b4ab9c16b7b3ec6d8c1bd6c3b2', sha256: '1b2b9ac8b0fb8d1e5b2dbd4e9b2f7a3f0f4e2c6a8b1d3e5f7a9c0b2d4e6f8a1c', size: 6985724, subdir: 'linux-64', timestamp: 1707225876123 });
  add('CondaPackageBuildRegistered', { conda_package_build_id: 1002, package_id: 2, channel_id: 1, build: 'hab00c5b_100_cpython', build_number: 100, depends: [], md5: '0c7f2ad5bb0b8b0d6e2dbc6f5a3f9e11', sha256: '2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b', size: 32100000, subdir: 'linux-64', timestamp: 1702000000000 });
  add('CondaPackageBuildRegistered', { conda_package_build_id: 1003, package_id: 3, channel_id: 2, build: 'h2a9d1d5_0', build_number: 0, depends: ['libgcc-ng >=12'], md5: '9f8e7d6c5b4a39281706f5e4d3c2b1a0', sha256: '3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c', size: 25000000 });
  add('CondaPackageBuildRegistered', { conda_package_build_id: 1004, package_id: 1, channel_id: 1, build: 'py312h8753938_0', build_number: 0, depends: ['python >=3.12,<3.13.0a0'], md5: 'aa9bb0b4ab9c16b7b3ec6d8c1bd6c3b2', sha256: '4b2b9ac8b0fb8d1e5b2dbd4e9b2f7a3f0f4e2c6a8b1d3e5f7a9c0b2d4e6f8a1c', size: 6000000, subdir: 'osx-arm64', timestamp: 1707225876999 });
  add('CondaChannelSynced', { channel_id: 1, last_update: '2024-03-02T09:30:00Z' });

  add('NamespaceCreated', { namespace_id: 1, name: 'default', metadata_: { owner: 'platform' } });
  add('NamespaceCreated', { namespace_id: 2, name: 'data-team' });
  add('NamespaceCreated', { namespace_id: 3, name: 'scratch', metadata_: {} });
  add('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: { owner: 'platform', cost_center: 42 } });
  add('NamespaceRoleMappingAdded', { namespace_id: 1, id: 1, entity: 'default/*', role: 'admin' });
  add('NamespaceRoleMappingAdded', { namespace_id: 2, id: 2, entity: 'data-team/*', role: 'editor' });
  add('NamespaceRoleMappingRemoved', { namespace_id: 1, id: 1 });
  add('NamespaceRoleGranted', { namespace_id: 1, id: 1, other_namespace_id: 2, role: 'viewer' });
  add('NamespaceRoleGranted', { namespace_id: 1, id: 2, other_namespace_id: 2, role: 'admin' });
  add('NamespaceRoleGranted', { namespace_id: 2, id: 3, other_namespace_id: 1, role: 'developer' });
  add('NamespaceRoleRevoked', { namespace_id: 2, other_namespace_id: 1 });

  add('SpecificationRegistered', { specification_id: 1, name: 'python-data', spec: specA, sha256: 'a'.repeat(64), created_on: '2024-03-02T10:00:00.123456Z', is_lockfile: false });
  add('SpecificationRegistered', { specification_id: 2, name: 'r-env', spec: specB, sha256: 'b'.repeat(64), created_on: '2024-03-02T11:00:00Z', is_lockfile: true });

  add('EnvironmentCreated', { environment_id: 1, namespace_id: 1, name: 'python-data', description: 'PyData' });
  add('EnvironmentCreated', { environment_id: 2, namespace_id: 2, name: 'r-env' });
  add('EnvironmentCreated', { environment_id: 3, namespace_id: 3, name: 'tmp', description: 'throwaway' });
  add('EnvironmentDescriptionUpdated', { environment_id: 2, description: 'R for the data team' });

  add('SolveScheduled', { solve_id: 1, specification_id: 1, scheduled_on: '2024-03-02T10:00:00Z' });
  add('SolveStarted', { solve_id: 1, started_on: '2024-03-02T10:00:01Z' });
  add('SolveCompleted', { solve_id: 1, ended_on: '2024-03-02T10:00:09Z', conda_package_build_ids: [1001, 1002] });

  // Build 1 completes and becomes environment 1's current build.
  add('BuildScheduled', { build_id: 1, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-02T10:00:00.123456Z', build_key_version: 2 });
  add('BuildStarted', { build_id: 1, started_on: '2024-03-02T10:00:05Z' });
  add('BuildStatusInfoUpdated', { build_id: 1, status_info: 'solving' });
  add('BuildPackagesRecorded', { build_id: 1, conda_package_build_ids: [1001, 1002] });
  add('ArtifactStored', { build_id: 1, build_artifact_id: 1, artifact_type: 'LOGS', key: 'logs/aaaaaaaa-1709373600-1-python-data.log' });
  add('ArtifactStored', { build_id: 1, build_artifact_id: 2, artifact_type: 'LOCKFILE', key: 'lockfile/aaaaaaaa-1709373600-1-python-data.yml' });
  add('ArtifactStored', { build_id: 1, build_artifact_id: 3, artifact_type: 'YAML', key: 'yaml/aaaaaaaa-1709373600-1-python-data.yml' });
  add('ArtifactStored', { build_id: 1, build_artifact_id: 4, artifact_type: 'DIRECTORY', key: '/opt/conda-store/default/aaaaaaaa-1709373600-1-python-data' });
  add('BuildCompleted', { build_id: 1, ended_on: '2024-03-02T10:04:31Z', size: 734003200 });
  add('EnvironmentCurrentBuildSet', { environment_id: 1, current_build_id: 1 });

  // Build 2 fails, is deleted, and loses its artifacts.
  add('BuildScheduled', { build_id: 2, environment_id: 1, specification_id: 1, scheduled_on: '2024-03-03T10:00:00Z', build_key_version: 3, hash: '5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b' });
  add('BuildStarted', { build_id: 2, started_on: '2024-03-03T10:00:02Z' });
  add('ArtifactStored', { build_id: 2, build_artifact_id: 5, artifact_type: 'LOGS', key: 'logs/5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b.log' });
  add('BuildFailed', { build_id: 2, ended_on: '2024-03-03T10:01:12Z', status_info: 'conda solve failed: nothing provides numpy' });
  add('BuildDeleted', { build_id: 2, deleted_on: '2024-03-04T08:00:00Z' });
  add('ArtifactDeleted', { build_id: 2, build_artifact_id: 5 });
  add('BuildSizeUpdated', { build_id: 2, size: 0 });

  // Build 3 is canceled while queued.
  add('BuildScheduled', { build_id: 3, environment_id: 2, specification_id: 2, scheduled_on: '2024-03-02T11:00:00Z', build_key_version: 2 });
  add('BuildCanceled', { build_id: 3, ended_on: '2024-03-02T11:00:30Z', status_info: 'canceled by alice' });

  // Namespace 3 is deleted (soft: it, its environment, its build), then purged, children first.
  add('BuildScheduled', { build_id: 4, environment_id: 3, specification_id: 1, scheduled_on: '2024-03-05T09:00:00Z', build_key_version: 1 });
  add('BuildStarted', { build_id: 4, started_on: '2024-03-05T09:00:01Z' });
  add('ArtifactStored', { build_id: 4, build_artifact_id: 6, artifact_type: 'CONDA_PACK', key: 'archive/aaaa-1709629200-4-tmp.tar.gz' });
  add('BuildPackagesRecorded', { build_id: 4, conda_package_build_ids: [1001] });
  add('BuildCompleted', { build_id: 4, ended_on: '2024-03-05T09:03:00Z', size: 1024 });
  add('EnvironmentCurrentBuildSet', { environment_id: 3, current_build_id: 4 });
  add('NamespaceDeleted', { namespace_id: 3, deleted_on: '2024-03-06T12:00:00Z' });
  add('BuildPurged', { build_id: 4 });
  add('EnvironmentPurged', { environment_id: 3 });
  add('NamespacePurged', { namespace_id: 3 });

  // Environment 2 is deleted (soft): it and build 3.
  add('EnvironmentDeleted', { environment_id: 2, deleted_on: '2024-03-07T12:00:00Z' });

  add('StorageUsageReported', { disk_usage: 1000, free_storage: 9000, total_storage: 10000 });
  add('StorageUsageReported', { disk_usage: 12884901888, free_storage: 53687091200, total_storage: 107374182400 });
  add('SettingStored', { id: 1, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel'] });
  add('SettingStored', { id: 2, prefix: 'setting/default/python-data', key: 'conda_included_packages', value: [] });
  add('SettingStored', { id: 3, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel', 'notebook'] });
  add('WorkerInitialized', { id: 1, initialized: false });
  add('WorkerInitialized', { id: 1, initialized: true });
  return events;
}
