/**
 * The projection handlers, without a database: given an event, then these row changes, module by
 * module in the order the runner applies them (condaStoreProjections). The runner's own tests
 * check that the changes reach PostgreSQL; these check what the changes are.
 */
import test from 'ava';
import { EVENT_TYPES, type EventType } from '../src/catalogue/index.js';
import { foreignKeyOrder, type ForeignKeyEdge } from '../src/projection/columns.js';
import { handledTypes, type RowChange } from '../src/projection/definition.js';
import { allProjections, condaStoreProjections, projectionsByName } from '../projections/index.js';
import { project, projectAll, type ModuleChange } from './helpers/project.js';
import { realisticHistory } from './helpers/history.js';
import { samples } from './helpers/samples.js';
import { condaStoreTables } from './schema/conda-store-spec.js';

const T1 = '2024-03-09T17:45:00.250000Z';

// ---------------------------------------------------------------------------------------------
// Namespaces

test('NamespaceCreated inserts the namespace, live, with its metadata', (t) => {
  t.deepEqual(project('NamespaceCreated', { namespace_id: 1, name: 'default', metadata_: { owner: 'data-team' } }), [
    ['namespaces', { op: 'insert', table: 'namespace', row: { id: 1, name: 'default', deleted_on: null, metadata_: { owner: 'data-team' } } }],
  ]);
});

test("NamespaceCreated without metadata_ stores conda-store's default {} (absent or null)", (t) => {
  const expected: ModuleChange[] = [
    ['namespaces', { op: 'insert', table: 'namespace', row: { id: 2, name: 'data-team', deleted_on: null, metadata_: {} } }],
  ];
  t.deepEqual(project('NamespaceCreated', { namespace_id: 2, name: 'data-team' }), expected);
  t.deepEqual(project('NamespaceCreated', { namespace_id: 2, name: 'data-team', metadata_: null }), expected);
});

test('NamespaceMetadataUpdated replaces metadata_', (t) => {
  t.deepEqual(project('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: { owner: 'platform', cost_center: 42 } }), [
    ['namespaces', { op: 'update', table: 'namespace', where: { id: 1 }, set: { metadata_: { owner: 'platform', cost_center: 42 } } }],
  ]);
});

test('NamespaceRoleMappingAdded inserts a v1 role mapping', (t) => {
  t.deepEqual(project('NamespaceRoleMappingAdded', { namespace_id: 1, id: 5, entity: 'default/*', role: 'admin' }), [
    ['namespaces', { op: 'insert', table: 'namespace_role_mapping', row: { id: 5, namespace_id: 1, entity: 'default/*', role: 'admin' } }],
  ]);
});

test('NamespaceRoleMappingAdded stores the role editor as developer', (t) => {
  t.deepEqual(project('NamespaceRoleMappingAdded', { namespace_id: 2, id: 6, entity: 'data-team/*', role: 'editor' }), [
    ['namespaces', { op: 'insert', table: 'namespace_role_mapping', row: { id: 6, namespace_id: 2, entity: 'data-team/*', role: 'developer' } }],
  ]);
});

test('NamespaceRoleMappingRemoved deletes the namespace\'s mapping of that id (never another namespace\'s)', (t) => {
  t.deepEqual(project('NamespaceRoleMappingRemoved', { namespace_id: 1, id: 5 }), [
    ['namespaces', { op: 'delete', table: 'namespace_role_mapping', where: { id: 5, namespace_id: 1 } }],
  ]);
});

test('NamespaceRoleGranted upserts the v2 row of the pair, updating only the role', (t) => {
  t.deepEqual(project('NamespaceRoleGranted', { namespace_id: 1, id: 3, other_namespace_id: 2, role: 'viewer' }), [
    [
      'namespaces',
      {
        op: 'upsert',
        table: 'namespace_role_mapping_v2',
        row: { id: 3, namespace_id: 1, other_namespace_id: 2, role: 'viewer' },
        key: ['namespace_id', 'other_namespace_id'],
        update: ['role'],
      },
    ],
  ]);
});

test('NamespaceRoleGranted stores the role editor as developer', (t) => {
  const [[, change] = []] = project('NamespaceRoleGranted', { namespace_id: 1, id: 3, other_namespace_id: 2, role: 'editor' });
  t.like(change, { op: 'upsert', row: { role: 'developer' } });
});

test('NamespaceRoleRevoked deletes the v2 row of the pair', (t) => {
  t.deepEqual(project('NamespaceRoleRevoked', { namespace_id: 1, other_namespace_id: 2 }), [
    ['namespaces', { op: 'delete', table: 'namespace_role_mapping_v2', where: { namespace_id: 1, other_namespace_id: 2 } }],
  ]);
});

test('NamespaceDeleted stamps one time on the namespace, its environments and their builds, in that order', (t) => {
  t.deepEqual(project('NamespaceDeleted', { namespace_id: 3, deleted_on: T1 }), [
    ['namespaces', { op: 'update', table: 'namespace', where: { id: 3 }, set: { deleted_on: T1 } }],
    ['environments', { op: 'update', table: 'environment', where: { namespace_id: 3 }, set: { deleted_on: T1 } }],
    [
      'builds',
      {
        op: 'sql',
        table: 'build',
        text: 'UPDATE build SET deleted_on = $1::timestamp WHERE environment_id IN (SELECT id FROM environment WHERE namespace_id = $2::integer)',
        values: [T1, 3],
      },
    ],
  ]);
});

test('NamespacePurged deletes its role mappings (v1, v2 both ways), then the namespace', (t) => {
  t.deepEqual(project('NamespacePurged', { namespace_id: 3 }), [
    ['namespaces', { op: 'delete', table: 'namespace_role_mapping', where: { namespace_id: 3 } }],
    ['namespaces', { op: 'delete', table: 'namespace_role_mapping_v2', where: { namespace_id: 3 } }],
    ['namespaces', { op: 'delete', table: 'namespace_role_mapping_v2', where: { other_namespace_id: 3 } }],
    ['namespaces', { op: 'delete', table: 'namespace', where: { id: 3 } }],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Environments

test('EnvironmentCreated inserts the environment with no current build', (t) => {
  t.deepEqual(project('EnvironmentCreated', samples.EnvironmentCreated), [
    [
      'environments',
      {
        op: 'insert',
        table: 'environment',
        row: { id: 1, namespace_id: 1, name: 'python-data', current_build_id: null, deleted_on: null, description: 'Python with the PyData stack' },
      },
    ],
  ]);
});

test('EnvironmentCreated without a description stores NULL (absent or null)', (t) => {
  const expected: ModuleChange[] = [
    [
      'environments',
      { op: 'insert', table: 'environment', row: { id: 2, namespace_id: 1, name: 'r-env', current_build_id: null, deleted_on: null, description: null } },
    ],
  ];
  t.deepEqual(project('EnvironmentCreated', { environment_id: 2, namespace_id: 1, name: 'r-env' }), expected);
  t.deepEqual(project('EnvironmentCreated', { environment_id: 2, namespace_id: 1, name: 'r-env', description: null }), expected);
});

test('EnvironmentDescriptionUpdated updates the description', (t) => {
  t.deepEqual(project('EnvironmentDescriptionUpdated', { environment_id: 1, description: 'Python 3.12' }), [
    ['environments', { op: 'update', table: 'environment', where: { id: 1 }, set: { description: 'Python 3.12' } }],
  ]);
});

test('EnvironmentCurrentBuildSet points the environment at the build', (t) => {
  t.deepEqual(project('EnvironmentCurrentBuildSet', { environment_id: 1, current_build_id: 42 }), [
    ['environments', { op: 'update', table: 'environment', where: { id: 1 }, set: { current_build_id: 42 } }],
  ]);
});

test('EnvironmentDeleted stamps the environment and its builds with one time', (t) => {
  t.deepEqual(project('EnvironmentDeleted', { environment_id: 1, deleted_on: T1 }), [
    ['environments', { op: 'update', table: 'environment', where: { id: 1 }, set: { deleted_on: T1 } }],
    ['builds', { op: 'update', table: 'build', where: { environment_id: 1 }, set: { deleted_on: T1 } }],
  ]);
});

test('EnvironmentPurged deletes the environment row', (t) => {
  t.deepEqual(project('EnvironmentPurged', { environment_id: 1 }), [['environments', { op: 'delete', table: 'environment', where: { id: 1 } }]]);
});

// ---------------------------------------------------------------------------------------------
// Specifications

test('SpecificationRegistered inserts the specification with its spec as JSON', (t) => {
  t.deepEqual(project('SpecificationRegistered', samples.SpecificationRegistered), [
    [
      'specifications',
      {
        op: 'insert',
        table: 'specification',
        row: {
          id: 1,
          name: 'python-data',
          spec: { name: 'python-data', channels: ['conda-forge'], dependencies: ['python=3.12', 'numpy', 'pandas'] },
          sha256: 'c1f2f6e3d0b54a4f8b2c36d9c7e1f0a59e0c3b7d2a4f6e8c1b3d5f7a9c2e4b6d',
          created_on: '2024-03-02T10:00:00.123456Z',
          is_lockfile: false,
        },
      },
    ],
  ]);
});

test('SpecificationRegistered without created_on stores NULL (no clock in a projection), a lockfile as is_lockfile', (t) => {
  const [[, change] = []] = project('SpecificationRegistered', {
    specification_id: 2,
    name: 'r-env',
    spec: { name: 'r-env', lockfile: { version: 1 } },
    sha256: 'b'.repeat(64),
    is_lockfile: true,
  });
  t.like(change, { op: 'insert', row: { id: 2, created_on: null, is_lockfile: true } });
});

// ---------------------------------------------------------------------------------------------
// Builds

test('BuildScheduled inserts a QUEUED build of size 0, writing every column', (t) => {
  t.deepEqual(project('BuildScheduled', samples.BuildScheduled), [
    [
      'builds',
      {
        op: 'insert',
        table: 'build',
        row: {
          id: 42,
          specification_id: 1,
          environment_id: 1,
          status: 'QUEUED',
          size: 0,
          scheduled_on: '2024-03-02T10:00:00.123456Z',
          started_on: null,
          ended_on: null,
          deleted_on: null,
          status_info: null,
          build_key_version: 3,
          hash: '5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b',
        },
      },
    ],
  ]);
});

test('BuildScheduled without a hash (build key version 1 or 2) stores NULL', (t) => {
  const [[, change] = []] = project('BuildScheduled', {
    build_id: 1,
    environment_id: 1,
    specification_id: 1,
    scheduled_on: '2024-03-02T10:00:00Z',
    build_key_version: 2,
  });
  t.like(change, { op: 'insert', row: { hash: null, build_key_version: 2 } });
});

test('BuildStarted sets BUILDING and started_on', (t) => {
  t.deepEqual(project('BuildStarted', { build_id: 42, started_on: '2024-03-02T10:00:05Z' }), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'BUILDING', started_on: '2024-03-02T10:00:05Z' } }],
  ]);
});

test('BuildStatusInfoUpdated sets status_info', (t) => {
  t.deepEqual(project('BuildStatusInfoUpdated', { build_id: 42, status_info: 'solving environment' }), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status_info: 'solving environment' } }],
  ]);
});

test('BuildPackagesRecorded links each package build once (empty update list: DO NOTHING on conflict)', (t) => {
  const link = (id: number): ModuleChange => [
    'builds',
    { op: 'upsert', table: 'build_conda_package_build', row: { build_id: 42, conda_package_build_id: id }, key: ['build_id', 'conda_package_build_id'], update: [] },
  ];
  t.deepEqual(project('BuildPackagesRecorded', { build_id: 42, conda_package_build_ids: [1001, 1002] }), [link(1001), link(1002)]);
  t.deepEqual(project('BuildPackagesRecorded', { build_id: 42, conda_package_build_ids: [] }), []);
});

test('ArtifactStored inserts the artifact with its id', (t) => {
  t.deepEqual(project('ArtifactStored', samples.ArtifactStored), [
    ['builds', { op: 'insert', table: 'build_artifact', row: { id: 7, build_id: 42, artifact_type: 'LOGS', key: 'logs/5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b.log' } }],
  ]);
});

test('ArtifactDeleted deletes the build\'s artifact of that id (never another build\'s)', (t) => {
  t.deepEqual(project('ArtifactDeleted', { build_id: 42, build_artifact_id: 7 }), [['builds', { op: 'delete', table: 'build_artifact', where: { id: 7, build_id: 42 } }]]);
});

test('BuildCompleted sets COMPLETED, ended_on and the size', (t) => {
  t.deepEqual(project('BuildCompleted', { build_id: 42, ended_on: '2024-03-02T10:04:31+00:00', size: 734_003_200 }), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'COMPLETED', ended_on: '2024-03-02T10:04:31+00:00', size: 734_003_200 } }],
  ]);
});

test('BuildCompleted without a size keeps the size the build has (absent or null)', (t) => {
  const expected: ModuleChange[] = [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'COMPLETED', ended_on: '2024-03-02T10:04:31Z' } }],
  ];
  t.deepEqual(project('BuildCompleted', { build_id: 42, ended_on: '2024-03-02T10:04:31Z' }), expected);
  t.deepEqual(project('BuildCompleted', { build_id: 42, ended_on: '2024-03-02T10:04:31Z', size: null }), expected);
});

test('BuildFailed sets FAILED, ended_on and the reason', (t) => {
  t.deepEqual(project('BuildFailed', samples.BuildFailed), [
    [
      'builds',
      {
        op: 'update',
        table: 'build',
        where: { id: 42 },
        set: { status: 'FAILED', ended_on: '2024-03-02T10:01:12Z', status_info: 'conda solve failed: nothing provides numpy' },
      },
    ],
  ]);
});

// Regression (found by a review): a reason set before (BuildStatusInfoUpdated) was kept, where
// conda-store's set_build_failed writes the reason it is given, None by default.
test('BuildFailed without a reason clears status_info (absent or null), as conda-store does', (t) => {
  const expected: ModuleChange[] = [['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'FAILED', ended_on: '2024-03-02T10:01:12Z', status_info: null } }]];
  t.deepEqual(project('BuildFailed', { build_id: 42, ended_on: '2024-03-02T10:01:12Z' }), expected);
  t.deepEqual(project('BuildFailed', { build_id: 42, ended_on: '2024-03-02T10:01:12Z', status_info: null }), expected);
});

test('BuildCanceled sets CANCELED, ended_on and the reason, NULL when none is given', (t) => {
  t.deepEqual(project('BuildCanceled', samples.BuildCanceled), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'CANCELED', ended_on: '2024-03-02T10:01:12Z', status_info: 'build canceled by alice' } }],
  ]);
  t.deepEqual(project('BuildCanceled', { build_id: 42, ended_on: '2024-03-02T10:01:12Z' }), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { status: 'CANCELED', ended_on: '2024-03-02T10:01:12Z', status_info: null } }],
  ]);
});

test('BuildDeleted stamps deleted_on on the build only', (t) => {
  t.deepEqual(project('BuildDeleted', { build_id: 42, deleted_on: '2024-03-10T08:00:00Z' }), [
    ['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { deleted_on: '2024-03-10T08:00:00Z' } }],
  ]);
});

test('BuildSizeUpdated sets the size', (t) => {
  t.deepEqual(project('BuildSizeUpdated', { build_id: 42, size: 0 }), [['builds', { op: 'update', table: 'build', where: { id: 42 }, set: { size: 0 } }]]);
});

test('BuildPurged clears current_build_id pointing at it, then deletes its artifacts, its package links and the build', (t) => {
  t.deepEqual(project('BuildPurged', { build_id: 42 }), [
    ['environments', { op: 'update', table: 'environment', where: { current_build_id: 42 }, set: { current_build_id: null } }],
    ['builds', { op: 'delete', table: 'build_artifact', where: { build_id: 42 } }],
    ['builds', { op: 'delete', table: 'build_conda_package_build', where: { build_id: 42 } }],
    ['builds', { op: 'delete', table: 'build', where: { id: 42 } }],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Channels and packages

test('CondaChannelRegistered inserts a channel never synced', (t) => {
  t.deepEqual(project('CondaChannelRegistered', samples.CondaChannelRegistered), [
    ['channels', { op: 'insert', table: 'conda_channel', row: { id: 1, name: 'https://conda.anaconda.org/conda-forge', last_update: null } }],
  ]);
});

test('CondaChannelSynced sets last_update', (t) => {
  t.deepEqual(project('CondaChannelSynced', { channel_id: 1, last_update: '2024-03-02T09:30:00Z' }), [
    ['channels', { op: 'update', table: 'conda_channel', where: { id: 1 }, set: { last_update: '2024-03-02T09:30:00Z' } }],
  ]);
});

test('CondaPackageRegistered inserts the package, a null field as NULL', (t) => {
  t.deepEqual(project('CondaPackageRegistered', samples.CondaPackageRegistered), [
    [
      'channels',
      {
        op: 'insert',
        table: 'conda_package',
        row: {
          id: 7,
          channel_id: 1,
          license: 'BSD-3-Clause',
          license_family: 'BSD',
          name: 'numpy',
          version: '1.26.4',
          summary: 'The fundamental package for scientific computing with Python.',
          description: null,
        },
      },
    ],
  ]);
});

test('CondaPackageRegistered without the optional fields stores NULLs', (t) => {
  t.deepEqual(project('CondaPackageRegistered', { package_id: 3, channel_id: 2, name: 'r-base', version: '4.3.2' }), [
    [
      'channels',
      {
        op: 'insert',
        table: 'conda_package',
        row: { id: 3, channel_id: 2, license: null, license_family: null, name: 'r-base', version: '4.3.2', summary: null, description: null },
      },
    ],
  ]);
});

test('CondaPackageBuildRegistered inserts the package build, depends and constrains as JSON lists', (t) => {
  t.deepEqual(project('CondaPackageBuildRegistered', samples.CondaPackageBuildRegistered), [
    [
      'channels',
      {
        op: 'insert',
        table: 'conda_package_build',
        row: {
          id: 1001,
          package_id: 7,
          channel_id: 1,
          build: 'py312h8753938_0',
          build_number: 0,
          constrains: ['numpy-base <0a0'],
          depends: ['libblas >=3.9.0,<4.0a0', 'libcxx >=16', 'python >=3.12,<3.13.0a0', 'python_abi 3.12.* *_cp312'],
          md5: '8a9bb0b4ab9c16b7b3ec6d8c1bd6c3b2',
          sha256: '1b2b9ac8b0fb8d1e5b2dbd4e9b2f7a3f0f4e2c6a8b1d3e5f7a9c0b2d4e6f8a1c',
          size: 6_985_724,
          subdir: 'osx-arm64',
          timestamp: 1_707_225_876_123,
        },
      },
    ],
  ]);
});

test('CondaPackageBuildRegistered without constrains, subdir, timestamp stores NULLs; an empty depends is stored as "", as conda-store\'s sync stores it', (t) => {
  t.deepEqual(
    project('CondaPackageBuildRegistered', {
      conda_package_build_id: 1003,
      package_id: 3,
      channel_id: 2,
      build: 'h2a9d1d5_0',
      build_number: 0,
      depends: [],
      constrains: null,
      md5: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
      sha256: '3d4e',
      size: 25_000_000,
    }),
    [
      [
        'channels',
        {
          op: 'insert',
          table: 'conda_package_build',
          row: {
            id: 1003,
            package_id: 3,
            channel_id: 2,
            build: 'h2a9d1d5_0',
            build_number: 0,
            constrains: null,
            depends: '',
            md5: '9f8e7d6c5b4a39281706f5e4d3c2b1a0',
            sha256: '3d4e',
            size: 25_000_000,
            subdir: null,
            timestamp: null,
          },
        },
      ],
    ],
  );
});

// ---------------------------------------------------------------------------------------------
// Solves

test('SolveScheduled inserts the solve, not started', (t) => {
  t.deepEqual(project('SolveScheduled', samples.SolveScheduled), [
    ['solves', { op: 'insert', table: 'solve', row: { id: 5, specification_id: 1, scheduled_on: '2024-03-02T10:00:00Z', started_on: null, ended_on: null } }],
  ]);
});

test('SolveStarted sets started_on', (t) => {
  t.deepEqual(project('SolveStarted', { solve_id: 5, started_on: '2024-03-02T10:00:01Z' }), [
    ['solves', { op: 'update', table: 'solve', where: { id: 5 }, set: { started_on: '2024-03-02T10:00:01Z' } }],
  ]);
});

test('SolveCompleted sets ended_on, then links each package build once (DO NOTHING on conflict)', (t) => {
  const link = (id: number): ModuleChange => [
    'solves',
    { op: 'upsert', table: 'solve_conda_package_build', row: { solve_id: 5, conda_package_build_id: id }, key: ['solve_id', 'conda_package_build_id'], update: [] },
  ];
  t.deepEqual(project('SolveCompleted', { solve_id: 5, ended_on: '2024-03-02T10:00:09Z', conda_package_build_ids: [1001, 1002] }), [
    ['solves', { op: 'update', table: 'solve', where: { id: 5 }, set: { ended_on: '2024-03-02T10:00:09Z' } }],
    link(1001),
    link(1002),
  ]);
});

// ---------------------------------------------------------------------------------------------
// Server state

test('StorageUsageReported upserts the single configuration row, id 1', (t) => {
  t.deepEqual(project('StorageUsageReported', { disk_usage: 1000, free_storage: 9000, total_storage: 10000 }), [
    [
      'server-state',
      {
        op: 'upsert',
        table: 'conda_store_configuration',
        row: { id: 1, disk_usage: 1000, free_storage: 9000, total_storage: 10000 },
        key: ['id'],
        update: ['disk_usage', 'free_storage', 'total_storage'],
      },
    ],
  ]);
});

test('SettingStored updates the (prefix, key) row or inserts it, in one statement, the value as JSON text', (t) => {
  const changes = project('SettingStored', { id: 3, prefix: 'setting/default/python-data', key: 'conda_included_packages', value: ['ipykernel'] });
  t.is(changes.length, 1);
  const [[name, change] = []] = changes;
  t.is(name, 'server-state');
  if (change?.op !== 'sql') return t.fail('expected a sql change');
  t.is(change.table, 'keyvaluestore');
  t.deepEqual(change.values, [3, 'setting/default/python-data', 'conda_included_packages', '["ipykernel"]']);
  const sql = change.text.replace(/\s+/g, ' ');
  t.regex(sql, /UPDATE keyvaluestore SET value = \$4::json WHERE prefix = \$2::varchar AND key = \$3::varchar/);
  t.regex(sql, /INSERT INTO keyvaluestore \(id, prefix, key, value\) SELECT \$1::integer, \$2::varchar, \$3::varchar, \$4::json WHERE NOT EXISTS/);
});

test('SettingStored keeps a JSON null as the JSON value null', (t) => {
  const [[, change] = []] = project('SettingStored', { id: 4, prefix: 'setting', key: 'default_namespace', value: null });
  t.like(change, { op: 'sql', values: [4, 'setting', 'default_namespace', 'null'] });
});

test('WorkerInitialized upserts the worker by id', (t) => {
  t.deepEqual(project('WorkerInitialized', { id: 1, initialized: true }), [
    ['server-state', { op: 'upsert', table: 'worker', row: { id: 1, initialized: true }, key: ['id'], update: ['initialized'] }],
  ]);
});

// ---------------------------------------------------------------------------------------------
// The projections as a whole

test('the seven projections form one group, in foreign-key order, and are found by name', (t) => {
  t.deepEqual(
    condaStoreProjections.map((p) => p.name),
    ['namespaces', 'specifications', 'channels', 'environments', 'builds', 'solves', 'server-state'],
  );
  t.true(condaStoreProjections.every((p) => p.group === 'conda-store' && p.version >= 1));
  t.deepEqual(Object.keys(projectionsByName), allProjections.map((p) => p.name));
  for (const p of allProjections) t.is(projectionsByName[p.name], p);
});

test("they own conda-store's 16 tables, each exactly once", (t) => {
  const owned = condaStoreProjections.flatMap((p) => p.tables);
  t.is(new Set(owned).size, owned.length, 'a table is owned twice');
  t.deepEqual([...owned].sort(), Object.keys(condaStoreTables).sort());
});

test('every event type of the catalogue is handled by at least one projection, and only catalogue types are', (t) => {
  const handled = new Set(condaStoreProjections.flatMap(handledTypes));
  t.deepEqual(EVENT_TYPES.filter((type) => !handled.has(type)), []);
  t.deepEqual([...handled].filter((type) => !EVENT_TYPES.includes(type)), []);
  t.is(EVENT_TYPES.length, 36);
});

test('every sample event produces at least one change', (t) => {
  for (const type of EVENT_TYPES) t.true(project(type as EventType, samples[type] as never).length > 0, type);
});

/** Every change of the realistic history and of every sample, with the module that made it. */
function allChanges(): ModuleChange[] {
  return [...projectAll(realisticHistory()), ...EVENT_TYPES.flatMap((type) => project(type, samples[type] as never))];
}

test('no projection writes a table it does not declare', (t) => {
  for (const [name, change] of allChanges()) {
    t.true(projectionsByName[name]?.tables.includes(change.table), `${name} wrote ${change.table}`);
  }
});

const columnsOf = (table: string) => (condaStoreTables[table]?.columns ?? []).map((c) => c.name);

test('inserts and upserts write every column of the row, and NULL only into nullable columns', (t) => {
  for (const [name, change] of allChanges()) {
    if (change.op !== 'insert' && change.op !== 'upsert') continue;
    t.deepEqual(Object.keys(change.row).sort(), columnsOf(change.table).sort(), `${name}: ${change.table}`);
    for (const column of condaStoreTables[change.table]?.columns ?? []) {
      if (!column.nullable) t.not(change.row[column.name], null, `${change.table}.${column.name} is NOT NULL`);
    }
  }
});

test('updates and deletes name existing columns, always with a condition; no value is undefined', (t) => {
  for (const [name, change] of allChanges()) {
    const columns = columnsOf(change.table);
    const named = (row: Record<string, unknown>) => Object.keys(row).every((c) => columns.includes(c));
    const defined = (row: Record<string, unknown>) => Object.values(row).every((v) => v !== undefined);
    if (change.op === 'update') {
      t.true(Object.keys(change.where).length > 0 && Object.keys(change.set).length > 0, `${name}: ${change.table}`);
      t.true(named(change.where) && named(change.set) && defined(change.where) && defined(change.set), `${name}: ${change.table}`);
    } else if (change.op === 'delete') {
      t.true(Object.keys(change.where).length > 0 && named(change.where) && defined(change.where), `${name}: ${change.table}`);
    } else if (change.op === 'insert' || change.op === 'upsert') {
      t.true(defined(change.row), `${name}: ${change.table}`);
    } else {
      t.true(change.values.every((v) => v !== undefined), `${name}: ${change.table}`);
    }
  }
});

test('an upsert key is a primary key or unique constraint of its table, and it updates only other columns', (t) => {
  for (const [name, change] of allChanges()) {
    if (change.op !== 'upsert') continue;
    const constraints = condaStoreTables[change.table]?.constraints ?? [];
    const match = constraints.some(
      (c) => (c.type === 'PRIMARY KEY' || c.type === 'UNIQUE') && [...c.columns].sort().join() === [...change.key].sort().join(),
    );
    t.true(match, `${name}: ${change.table} (${change.key.join(', ')})`);
    for (const column of change.update ?? []) {
      t.true(columnsOf(change.table).includes(column) && !change.key.includes(column), `${name}: ${change.table}.${column}`);
    }
  }
});

test('sql changes cast every parameter and use exactly their values', (t) => {
  const sqlChanges = allChanges().filter((c): c is [string, Extract<RowChange, { op: 'sql' }>] => c[1].op === 'sql');
  t.true(sqlChanges.length > 0);
  for (const [name, change] of sqlChanges) {
    const uses = [...change.text.matchAll(/\$(\d+)(::)?/g)];
    t.true(uses.every((m) => m[2] === '::'), `${name}: an uncast parameter in ${change.text}`);
    const numbers = new Set(uses.map((m) => Number(m[1])));
    t.deepEqual([...numbers].sort((a, b) => a - b), change.values.map((_, i) => i + 1), `${name}: ${change.text}`);
  }
});

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

test('handlers are deterministic and leave the event untouched', (t) => {
  const frozen = deepFreeze(realisticHistory());
  const first = projectAll(frozen);
  const second = projectAll(realisticHistory());
  t.deepEqual(first, second);
  t.deepEqual(frozen.map((e) => e.data), realisticHistory().map((e) => e.data));
  t.true(first.length > realisticHistory().length);
});

test('the realistic history: a soft-deleted namespace stamps its environment and build, its purge clears and deletes in order', (t) => {
  const changes = projectAll(realisticHistory());
  const stamp = '2024-03-06T12:00:00Z';
  const stamped = changes.filter(([, c]) => (c.op === 'update' && c.set['deleted_on'] === stamp) || (c.op === 'sql' && c.values[0] === stamp));
  t.deepEqual(stamped.map(([name, c]) => `${name}:${c.table}`), ['namespaces:namespace', 'environments:environment', 'builds:build']);
  const purge = changes.filter(([, c]) => c.op === 'delete' || (c.op === 'update' && 'current_build_id' in c.set && c.set['current_build_id'] === null));
  t.deepEqual(
    purge.map(([, c]) => c.table),
    [
      'namespace_role_mapping', // NamespaceRoleMappingRemoved
      'namespace_role_mapping_v2', // NamespaceRoleRevoked
      'build_artifact', // ArtifactDeleted
      'environment', // BuildPurged: clear environment 3's current build
      'build_artifact',
      'build_conda_package_build',
      'build',
      'environment', // EnvironmentPurged
      'namespace_role_mapping', // NamespacePurged
      'namespace_role_mapping_v2',
      'namespace_role_mapping_v2',
      'namespace',
    ],
  );
});

// Regression: the environment <-> build cycle was cut wherever the alphabetical walk met it; it
// only came out right because "build" sorts before "environment".
test('foreign-key order: a cycle is cut at its nullable key, whatever the names; parents first', (t) => {
  for (const [env, build] of [['environment', 'build'], ['a_environment', 'z_build']] as const) {
    const edges: ForeignKeyEdge[] = [
      { child: env, parent: 'namespace', nullable: false },
      { child: env, parent: build, nullable: true }, // current_build_id
      { child: build, parent: env, nullable: false }, // environment_id
      { child: 'build_artifact', parent: build, nullable: false },
      { child: 'package_build', parent: 'package', nullable: true }, // nullable but no cycle: still ordered
    ];
    const ranks = foreignKeyOrder([env, build, 'namespace', 'build_artifact', 'package', 'package_build'], edges);
    const before = (a: string, b: string) => t.true(ranks.get(a)! < ranks.get(b)!, `${a} before ${b}`);
    before('namespace', env);
    before(env, build);
    before(build, 'build_artifact');
    before('package', 'package_build');
  }
});

