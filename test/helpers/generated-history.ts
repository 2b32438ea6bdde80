/**
 * A generated conda-store history of any size, for tests that need volume (crash and takeover
 * tests of the projection runner): a channel with many packages and package builds (the bulk,
 * registered by an initial sync and then by later syncs between the builds), namespaces with role
 * mappings, environments with their specifications and solves, builds going
 * QUEUED → BUILDING → COMPLETED or FAILED with artifacts and package links, and each environment's
 * current build set to its latest completed build; a few server-state events fill the last tables.
 * Every one of conda-store's sixteen tables gets rows.
 *
 * Deterministic: the same options give the same envelopes (ids included), and every event passes
 * the append-time rules when the history is appended in order; any prefix is a valid history too.
 */
import { createHash } from 'node:crypto';
import type { Envelope, EventData, EventType } from '../../src/catalogue/index.js';
import { decide } from '../../src/decide/index.js';
import type { AppendedEvent, EventLog } from '../../src/log/types.js';
import { envelopeFor } from './samples.js';

export interface GeneratedHistoryOptions {
  namespaces: number;
  environmentsPerNamespace: number;
  buildsPerEnvironment: number;
  /** Packages of the channel (each a conda_package row). */
  packages: number;
  packageBuildsPerPackage: number;
  /** Distinguishes the event ids of two histories meant for the same log; default 'generated'. */
  seed?: string;
}

const hex = (text: string) => createHash('sha256').update(text).digest('hex');

/** A uuid (version 4 layout) derived from a text: deterministic event ids. */
function uuidFrom(text: string): string {
  const h = hex(text);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** mulberry32: a small seeded PRNG, so the "random" choices are the same on every run. */
function prng(seed: string): () => number {
  let a = parseInt(hex(seed).slice(0, 8), 16) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SUBDIRS = ['linux-64', 'osx-64', 'osx-arm64', 'win-64', 'noarch', 'linux-aarch64'];
const LICENSES: [string, string][] = [
  ['BSD-3-Clause', 'BSD'],
  ['MIT', 'MIT'],
  ['Apache-2.0', 'Apache'],
  ['GPL-3.0-or-later', 'GPL3'],
  ['LGPL-2.1-only', 'LGPL'],
];

export function generatedHistory(options: GeneratedHistoryOptions): Envelope[] {
  const { namespaces, environmentsPerNamespace, buildsPerEnvironment, packages, packageBuildsPerPackage } = options;
  const seed = options.seed ?? 'generated';
  const random = prng(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

  const events: Envelope[] = [];
  const add = <T extends EventType>(type: T, data: EventData<T>) => {
    events.push(envelopeFor(type, data, { id: uuidFrom(`${seed}-${events.length}`) }));
  };

  // A clock that moves forward with every event: timestamps as conda-store writes them (UTC).
  let clock = Date.UTC(2024, 0, 1, 8, 0, 0);
  const now = (minutes = 1) => {
    clock += minutes * 60_000 + Math.floor(random() * 1000);
    return new Date(clock).toISOString();
  };

  // ---- The channel and its packages. Package builds get ids from 100001 on, like a busy server.
  const channelId = 1;
  add('CondaChannelRegistered', { channel_id: channelId, name: 'https://conda.anaconda.org/conda-forge' });
  const registeredBuildIds: number[] = [];
  let nextPackage = 0;
  const registerPackages = (count: number) => {
    for (let i = 0; i < count && nextPackage < packages; i++, nextPackage++) {
      const packageId = nextPackage + 1;
      const name = `pkg-${packageId.toString(36)}-${hex(`${seed}-name-${packageId}`).slice(0, 6)}`;
      const version = `${1 + (packageId % 7)}.${packageId % 13}.${packageId % 5}`;
      const [license, licenseFamily] = pick(LICENSES);
      add('CondaPackageRegistered', {
        package_id: packageId,
        channel_id: channelId,
        name,
        version,
        license,
        license_family: licenseFamily,
        summary: `The ${name} package`,
        description: packageId % 3 === 0 ? null : `A longer description of ${name}, version ${version}.`,
      });
      for (let b = 0; b < packageBuildsPerPackage; b++) {
        const id = 100_000 + packageId * 100 + b + 1;
        const subdir = SUBDIRS[b % SUBDIRS.length]!;
        add('CondaPackageBuildRegistered', {
          conda_package_build_id: id,
          package_id: packageId,
          channel_id: channelId,
          build: `py312h${hex(`${seed}-build-${id}`).slice(0, 7)}_${Math.floor(b / SUBDIRS.length)}`,
          build_number: Math.floor(b / SUBDIRS.length),
          depends: [`python >=3.12,<3.13.0a0`, `libdep-${packageId % 11} >=${b}.0`],
          constrains: b % 2 === 0 ? [`${name}-base <0a0`] : null,
          md5: hex(`${seed}-md5-${id}`).slice(0, 32),
          sha256: hex(`${seed}-sha256-${id}`),
          size: 10_000 + Math.floor(random() * 50_000_000),
          subdir,
          timestamp: 1_700_000_000_000 + id * 1000,
        });
        registeredBuildIds.push(id);
      }
    }
  };
  const packageBuildsFor = (count: number) => {
    const chosen = new Set<number>();
    while (chosen.size < Math.min(count, registeredBuildIds.length)) chosen.add(pick(registeredBuildIds));
    return [...chosen];
  };

  // The initial sync registers most packages; later syncs, between namespaces, the rest.
  registerPackages(Math.ceil(packages * 0.6));
  add('CondaChannelSynced', { channel_id: channelId, last_update: now() });
  const laterSync = Math.ceil((packages - nextPackage) / Math.max(namespaces, 1));

  add('StorageUsageReported', { disk_usage: 1_000_000, free_storage: 99_000_000, total_storage: 100_000_000 });
  add('WorkerInitialized', { id: 1, initialized: false });
  add('SettingStored', { id: 1, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel'] });

  let environmentId = 0;
  let buildId = 0;
  let artifactId = 0;
  for (let n = 1; n <= namespaces; n++) {
    const namespaceName = `team-${n}`;
    add('NamespaceCreated', { namespace_id: n, name: namespaceName, metadata_: n % 2 ? { owner: namespaceName } : null });
    add('NamespaceRoleMappingAdded', { namespace_id: n, id: n, entity: `${namespaceName}/*`, role: pick(['admin', 'viewer', 'developer', 'editor'] as const) });
    if (n > 1) add('NamespaceRoleGranted', { namespace_id: n, id: n - 1, other_namespace_id: n - 1, role: pick(['viewer', 'developer'] as const) });

    for (let e = 1; e <= environmentsPerNamespace; e++) {
      const envId = ++environmentId;
      const envName = `env-${e}`;
      const spec = { name: envName, channels: ['conda-forge'], dependencies: ['python=3.12', `numpy>=1.${envId % 27}`] };
      add('SpecificationRegistered', {
        specification_id: envId,
        name: envName,
        spec,
        sha256: hex(`${seed}-spec-${envId}-${JSON.stringify(spec)}`),
        created_on: now(),
        is_lockfile: false,
      });
      add('EnvironmentCreated', { environment_id: envId, namespace_id: n, name: envName, description: e % 2 ? `Environment ${envName} of ${namespaceName}` : null });
      add('SolveScheduled', { solve_id: envId, specification_id: envId, scheduled_on: now() });
      add('SolveStarted', { solve_id: envId, started_on: now() });
      add('SolveCompleted', { solve_id: envId, ended_on: now(), conda_package_build_ids: packageBuildsFor(5) });

      for (let b = 1; b <= buildsPerEnvironment; b++) {
        const id = ++buildId;
        const version3 = id % 2 === 0;
        const key = version3 ? hex(`${seed}-buildkey-${id}`).slice(0, 32) : `${hex(`${seed}-spec-${envId}`).slice(0, 8)}-${id}-${envName}`;
        add('BuildScheduled', {
          build_id: id,
          environment_id: envId,
          specification_id: envId,
          scheduled_on: now(),
          build_key_version: version3 ? 3 : 2,
          ...(version3 ? { hash: key } : {}),
        });
        add('BuildStarted', { build_id: id, started_on: now() });
        add('BuildStatusInfoUpdated', { build_id: id, status_info: 'solving environment' });
        add('ArtifactStored', { build_id: id, build_artifact_id: ++artifactId, artifact_type: 'LOGS', key: `logs/${key}.log` });
        const fails = random() < 0.2;
        if (fails) {
          add('BuildFailed', { build_id: id, ended_on: now(3), status_info: 'conda solve failed: nothing provides __cuda' });
          continue;
        }
        add('BuildPackagesRecorded', { build_id: id, conda_package_build_ids: packageBuildsFor(8) });
        add('ArtifactStored', { build_id: id, build_artifact_id: ++artifactId, artifact_type: 'LOCKFILE', key: `lockfile/${key}.yml` });
        add('ArtifactStored', { build_id: id, build_artifact_id: ++artifactId, artifact_type: 'YAML', key: `yaml/${key}.yml` });
        add('ArtifactStored', {
          build_id: id,
          build_artifact_id: ++artifactId,
          artifact_type: 'DIRECTORY',
          key: `/opt/conda-store/${namespaceName}/${key}`,
        });
        add('BuildCompleted', { build_id: id, ended_on: now(4), size: 100_000_000 + Math.floor(random() * 900_000_000) });
        add('EnvironmentCurrentBuildSet', { environment_id: envId, current_build_id: id });
      }
    }
    if (laterSync > 0 && nextPackage < packages) {
      registerPackages(laterSync);
      add('CondaChannelSynced', { channel_id: channelId, last_update: now() });
    }
  }
  registerPackages(packages - nextPackage);

  add('StorageUsageReported', { disk_usage: 50_000_000, free_storage: 50_000_000, total_storage: 100_000_000 });
  add('WorkerInitialized', { id: 1, initialized: true });
  add('SettingStored', { id: 1, prefix: 'setting', key: 'conda_included_packages', value: ['ipykernel', 'notebook'] });
  return events;
}

/**
 * Appends envelopes in order, in atomic batches of `batchSize` (decide, then one `append` call per
 * batch, as `conda-store-events append` does): much faster than one append per event. Throws on
 * the first envelope a rule refuses. The default of 100 is the fastest measured: the cost of one
 * `append_events` call grows faster than linearly with the number of requests in it
 * (3,800 events: 2.1 s in batches of 100, 6.1 s in batches of 500, 33 s in one batch).
 */
export async function appendInBatches(log: EventLog, envelopes: readonly Envelope[], batchSize = 100): Promise<AppendedEvent[]> {
  const appended: AppendedEvent[] = [];
  for (let start = 0; start < envelopes.length; start += batchSize) {
    const batch = envelopes.slice(start, start + batchSize);
    const decisions = await decide(log, batch);
    const refused = decisions.findIndex((decision) => decision.error);
    if (refused >= 0) throw new Error(`event ${start + refused} (${batch[refused]!.type}) refused: ${decisions[refused]!.error!.message}`);
    appended.push(...(await log.append(decisions.map((decision) => decision.request!))));
  }
  return appended;
}
