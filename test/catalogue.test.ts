import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import test, { type ExecutionContext } from 'ava';
import {
  catalogue,
  currentSchemaVersion,
  EVENT_TYPES,
  EventValidationError,
  ID_KINDS,
  isEventType,
  jsonSchemaFiles,
  streamOf,
  upcast,
  validateEnvelope,
  validateEvent,
  type EventType,
  type ValidationIssue,
} from '../src/catalogue/index.js';
import { brokenDataRule } from '../src/decide/data-rules.js';
import { toAppendRequest } from '../src/decide/index.js';
import { envelopeFor, samples } from './helpers/samples.js';

const schemasDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../schemas');

/** events.md, in its order. */
const EVENTS_MD = [
  'NamespaceCreated', 'NamespaceMetadataUpdated', 'NamespaceRoleMappingAdded', 'NamespaceRoleMappingRemoved',
  'NamespaceRoleGranted', 'NamespaceRoleRevoked', 'NamespaceDeleted', 'NamespacePurged',
  'EnvironmentCreated', 'EnvironmentDescriptionUpdated', 'EnvironmentCurrentBuildSet', 'EnvironmentDeleted', 'EnvironmentPurged',
  'SpecificationRegistered',
  'BuildScheduled', 'BuildStarted', 'BuildStatusInfoUpdated', 'BuildPackagesRecorded', 'ArtifactStored', 'ArtifactDeleted',
  'BuildCompleted', 'BuildFailed', 'BuildCanceled', 'BuildDeleted', 'BuildSizeUpdated', 'BuildPurged',
  'CondaChannelRegistered', 'CondaChannelSynced', 'CondaPackageRegistered', 'CondaPackageBuildRegistered',
  'SolveScheduled', 'SolveStarted', 'SolveCompleted',
  'StorageUsageReported', 'SettingStored', 'WorkerInitialized',
];

/** The stream of each sample: the id each event's stream is named by. */
const SAMPLE_STREAMS: Record<EventType, string> = {
  ...Object.fromEntries(EVENTS_MD.slice(0, 8).map((t) => [t, 'namespace-1'])),
  ...Object.fromEntries(EVENTS_MD.slice(8, 13).map((t) => [t, 'environment-1'])),
  SpecificationRegistered: 'specification-1',
  ...Object.fromEntries(EVENTS_MD.slice(14, 26).map((t) => [t, 'build-42'])),
  CondaChannelRegistered: 'conda_channel-1',
  CondaChannelSynced: 'conda_channel-1',
  CondaPackageRegistered: 'conda_package-7',
  CondaPackageBuildRegistered: 'conda_package-7',
  SolveScheduled: 'solve-5',
  SolveStarted: 'solve-5',
  SolveCompleted: 'solve-5',
  StorageUsageReported: 'conda_store_configuration',
  SettingStored: 'keyvaluestore-setting/default/python-data',
  WorkerInitialized: 'worker-1',
} as Record<EventType, string>;

/** Asserts that fn throws an EventValidationError naming the type, and one issue at path whose message matches. */
function rejects(t: ExecutionContext, fn: () => unknown, eventType: string | undefined, path: string, message: RegExp): ValidationIssue[] {
  const error = t.throws(fn, { instanceOf: EventValidationError }) as EventValidationError;
  t.is(error.eventType, eventType);
  t.true(error.message.startsWith(`${eventType ?? 'envelope'}: `), error.message);
  const issue = error.issues.find((i) => i.path === path);
  t.truthy(issue, `no issue at ${path}: ${error.message}`);
  t.regex(issue?.message ?? '', message);
  t.true(error.message.includes(`${path || '/'}: ${issue?.message}`), error.message);
  return error.issues;
}

/** The sample of a type with some fields changed (undefined removes a field). */
function withData(type: EventType, changes: Record<string, unknown>): Record<string, unknown> {
  const data: Record<string, unknown> = { ...samples[type], ...changes };
  for (const [key, value] of Object.entries(changes)) if (value === undefined) delete data[key];
  return data;
}

// ---------------------------------------------------------------------------------------------
// The catalogue

test('the catalogue lists exactly the events of events.md', (t) => {
  t.deepEqual([...EVENT_TYPES], EVENTS_MD);
  t.deepEqual(Object.keys(samples).sort(), [...EVENTS_MD].sort());
  for (const type of EVENT_TYPES) {
    const definition = catalogue[type];
    t.is(definition.type, type);
    t.is(definition.data.additionalProperties, false, type);
    t.regex(definition.description, /^[A-Z].*\.$/, type);
    t.false(definition.description.includes('\n'), type);
  }
});

for (const type of EVENT_TYPES) {
  test(`${type}: the sample validates, as data and in an envelope, and lands in ${SAMPLE_STREAMS[type]}`, (t) => {
    const event = validateEvent(type, samples[type]);
    t.is(event.type, type);
    t.is(streamOf(event), SAMPLE_STREAMS[type]);
    const kind: string = catalogue[type].kind;
    t.is(kind, SAMPLE_STREAMS[type].split('-')[0]!);
    const envelope = envelopeFor(type);
    t.is(validateEnvelope(envelope), envelope);
  });
}

test('a null metadata is as absent (a Python producer sends None), left out of the envelope returned; a null expectedVersion is refused', (t) => {
  const envelope = envelopeFor('NamespaceCreated');
  t.deepEqual(validateEnvelope({ ...envelope, metadata: null }), envelope);
  const schema = JSON.parse(fs.readFileSync(new URL('../schemas/envelope.json', import.meta.url), 'utf8')) as { properties: Record<string, { anyOf?: { type?: string }[] }> };
  t.true(schema.properties.metadata!.anyOf!.some((option) => option.type === 'null'), 'metadata may be null in the JSON Schema too');
  t.throws(() => validateEnvelope({ ...envelope, expectedVersion: null }), { instanceOf: EventValidationError });
});

test('an event id in upper case is valid, and comes back lowercase (as the log spells it) in a copy', (t) => {
  const envelope = envelopeFor('NamespaceCreated');
  const upper = { ...envelope, id: envelope.id.toUpperCase() };
  const validated = validateEnvelope(upper);
  t.deepEqual(validated, envelope);
  t.is(upper.id, envelope.id.toUpperCase(), 'the value given is left as it was');
});

test('stream templates name the field the stream is made of', (t) => {
  t.is(catalogue.BuildScheduled.streamTemplate, 'build-<build_id>');
  t.is(catalogue.CondaPackageBuildRegistered.streamTemplate, 'conda_package-<package_id>');
  t.is(catalogue.SettingStored.streamTemplate, 'keyvaluestore-<prefix>');
  t.is(catalogue.StorageUsageReported.streamTemplate, 'conda_store_configuration');
});

// Regression (found by a review): toAppendRequest trusted the envelope's stream, which only
// validateEnvelope checked; an envelope built in code (the library's appendEnvelopes) with build
// 8's data on build-7 claimed build-7 for build 8's row.
test('regression: the append-time rules refuse an envelope whose stream is not its data\'s, validated or not', (t) => {
  const envelope = envelopeFor('BuildScheduled', { ...samples.BuildScheduled, build_id: 8 });
  t.is(toAppendRequest(envelope).stream, 'build-8');
  const error = t.throws(() => toAppendRequest({ ...envelope, stream: 'build-7' }), { instanceOf: EventValidationError });
  t.is(error!.message, 'BuildScheduled: /stream: expected build-8 (build-<build_id>), got build-7');
});

test('isEventType knows only event types, not object keys', (t) => {
  t.true(isEventType('BuildScheduled'));
  t.false(isEventType('buildscheduled'));
  t.false(isEventType('toString'));
  t.false(isEventType('__proto__'));
});

test('ID_KINDS lists the allocator sequences', (t) => {
  t.deepEqual(
    [...ID_KINDS].sort(),
    [
      'build', 'build_artifact', 'conda_channel', 'conda_package', 'conda_package_build', 'environment', 'keyvaluestore',
      'namespace', 'namespace_role_mapping', 'namespace_role_mapping_v2', 'solve', 'specification', 'worker',
    ],
  );
});

test('upcast is the identity at schema_version 1', (t) => {
  for (const type of EVENT_TYPES) t.is(currentSchemaVersion(type), 1);
  const stored = { type: 'BuildStarted', data: samples.BuildStarted, metadata: { schema_version: 1 } };
  t.is(upcast(stored), stored);
  const bare = { type: 'BuildStarted', data: samples.BuildStarted };
  t.is(upcast(bare), bare);
});

// ---------------------------------------------------------------------------------------------
// Validation errors: each names the type, the field and the reason

test('unknown type', (t) => {
  const envelope = { ...envelopeFor('BuildStarted'), type: 'BuildStarteed' };
  rejects(t, () => validateEnvelope(envelope), undefined, '/type', /^unknown event type "BuildStarteed" \(did you mean BuildStarted\?\)$/);
  rejects(t, () => validateEvent('NoSuchThing', {}), undefined, '/type', /^unknown event type "NoSuchThing"$/);
});

test('missing required field: one issue, "is required"', (t) => {
  const issues = rejects(t, () => validateEvent('BuildStarted', withData('BuildStarted', { build_id: undefined })), 'BuildStarted', '/data/build_id', /^is required$/);
  t.is(issues.length, 1);
  const error = t.throws(() => validateEnvelope(envelopeFor('SettingStored', withData('SettingStored', { value: undefined }) as never)));
  t.is(error?.message, 'SettingStored: /data/value: is required');
});

test('wrong field type', (t) => {
  rejects(t, () => validateEvent('BuildStarted', withData('BuildStarted', { build_id: '42' })), 'BuildStarted', '/data/build_id', /^must be a positive integer \(got "42"\)$/);
  rejects(t, () => validateEvent('BuildStarted', withData('BuildStarted', { build_id: 4.5 })), 'BuildStarted', '/data/build_id', /must be a positive integer/);
  rejects(t, () => validateEvent('WorkerInitialized', { id: 1, initialized: 'yes' }), 'WorkerInitialized', '/data/initialized', /^must be true or false/);
  rejects(t, () => validateEvent('SpecificationRegistered', withData('SpecificationRegistered', { spec: ['python'] })), 'SpecificationRegistered', '/data/spec', /^must be an object \(got an array\)$/);
  rejects(t, () => validateEvent('BuildPackagesRecorded', { build_id: 42, conda_package_build_ids: [1001, 0] }), 'BuildPackagesRecorded', '/data/conda_package_build_ids/1', /^must be >= 1/);
  rejects(t, () => validateEvent('BuildStarted', 'BuildStarted'), 'BuildStarted', '/data', /^must be an object/);
});

test('negative and out-of-range numbers', (t) => {
  rejects(t, () => validateEvent('EnvironmentCurrentBuildSet', { environment_id: 1, current_build_id: -3 }), 'EnvironmentCurrentBuildSet', '/data/current_build_id', /^must be >= 1 \(got -3\)$/);
  rejects(t, () => validateEvent('NamespacePurged', { namespace_id: 0 }), 'NamespacePurged', '/data/namespace_id', /^must be >= 1/);
  rejects(t, () => validateEvent('NamespacePurged', { namespace_id: 2 ** 31 }), 'NamespacePurged', '/data/namespace_id', /^must be <= 2147483647/);
  rejects(t, () => validateEvent('BuildSizeUpdated', { build_id: 42, size: -1 }), 'BuildSizeUpdated', '/data/size', /^must be >= 0/);
  rejects(t, () => validateEvent('BuildSizeUpdated', { build_id: 42, size: 2 ** 53 }), 'BuildSizeUpdated', '/data/size', /^must be <= 9007199254740991/);
  t.notThrows(() => validateEvent('BuildSizeUpdated', { build_id: 42, size: Number.MAX_SAFE_INTEGER }));
});

test('over-long and forbidden strings', (t) => {
  rejects(t, () => validateEvent('NamespaceCreated', { namespace_id: 1, name: 'n'.repeat(256) }), 'NamespaceCreated', '/data/name', /^must be at most 255 characters \(got 256\)$/);
  t.notThrows(() => validateEvent('NamespaceCreated', { namespace_id: 1, name: 'n'.repeat(255) }));
  const pkg = 'CondaPackageRegistered';
  rejects(t, () => validateEvent(pkg, withData(pkg, { version: '1'.repeat(65) })), pkg, '/data/version', /^must be at most 64 characters/);
  rejects(t, () => validateEvent(pkg, withData(pkg, { license_family: 'B'.repeat(65) })), pkg, '/data/license_family', /^must be at most 64 characters/);
  rejects(t, () => validateEvent('BuildScheduled', withData('BuildScheduled', { hash: 'A'.repeat(32) })), 'BuildScheduled', '/data/hash', /^must be 32 lowercase hexadecimal digits/);
  rejects(t, () => validateEvent('NamespaceCreated', { namespace_id: 1, name: '' }), 'NamespaceCreated', '/data/name', /^must not be empty$/);
  rejects(t, () => validateEvent('NamespaceCreated', { namespace_id: 1, name: 'a\u0000b' }), 'NamespaceCreated', '/data/name', /NUL/);
});

// Regression: TypeBox counts UTF-16 code units, so a 255-character name of emoji (510 units) was
// refused, though the published schema, a Python producer's len() and varchar(255) all count 255.
test('string limits count characters (code points), as JSON Schema and PostgreSQL do, not UTF-16 units', (t) => {
  const emoji = '\u{1F40D}';
  t.notThrows(() => validateEvent('NamespaceCreated', { namespace_id: 1, name: emoji.repeat(255) }));
  rejects(t, () => validateEvent('NamespaceCreated', { namespace_id: 1, name: emoji.repeat(256) }), 'NamespaceCreated', '/data/name', /^must be at most 255 characters \(got 256\)$/);
  const pkg = 'CondaPackageRegistered';
  t.notThrows(() => validateEvent(pkg, withData(pkg, { version: `1.${emoji.repeat(62)}` })));
  rejects(t, () => validateEvent(pkg, withData(pkg, { license_family: emoji.repeat(65) })), pkg, '/data/license_family', /^must be at most 64 characters \(got 65\)$/);
});

test('a role mapping entity must be an ARN that some conda-store release accepts', (t) => {
  const mapping = (entity: string) => validateEvent('NamespaceRoleMappingAdded', { namespace_id: 1, id: 1, entity, role: 'viewer' });
  for (const entity of ['*/*', 'data-team/*', 'quansight-*/web', 'a.b=c+d@e/f~g^h?$&', 'team|ops/<env>']) t.notThrows(() => mapping(entity), entity);
  for (const entity of ['data-team', 'data team/*', 'a/b/c', '/*', '*/', '']) {
    rejects(t, () => mapping(entity), 'NamespaceRoleMappingAdded', '/data/entity', /^must be an ARN <namespace>\/<environment> such as data-team\/\*/);
  }
});

test('bad enum values', (t) => {
  rejects(
    t,
    () => validateEvent('ArtifactStored', withData('ArtifactStored', { artifact_type: 'LOG' })),
    'ArtifactStored',
    '/data/artifact_type',
    /^must be one of DIRECTORY, LOCKFILE, LOGS, YAML, CONDA_PACK, DOCKER_MANIFEST, CONSTRUCTOR_INSTALLER, CONTAINER_REGISTRY, DOCKER_BLOB \(got "LOG"\)$/,
  );
  rejects(t, () => validateEvent('NamespaceRoleGranted', withData('NamespaceRoleGranted', { role: 'owner' })), 'NamespaceRoleGranted', '/data/role', /^must be one of admin, viewer, developer, editor/);
  rejects(t, () => validateEvent('BuildScheduled', withData('BuildScheduled', { build_key_version: 4 })), 'BuildScheduled', '/data/build_key_version', /^must be one of 1, 2, 3 \(got 4\)$/);
  for (const role of ['admin', 'viewer', 'developer', 'editor']) {
    t.notThrows(() => validateEvent('NamespaceRoleMappingAdded', withData('NamespaceRoleMappingAdded', { role })));
  }
});

test('timestamps: ISO-8601 UTC only', (t) => {
  for (const ok of ['2024-03-02T10:00:00Z', '2024-03-02T10:00:00.123456Z', '2024-03-02T10:00:00.5+00:00', '2024-02-29T23:59:59Z']) {
    t.notThrows(() => validateEvent('BuildStarted', { build_id: 42, started_on: ok }), ok);
  }
  for (const bad of ['2024-03-02 10:00:00', '2024-03-02T10:00:00', '2024-03-02T10:00:00+02:00', '2024-03-02T10:00:00.1234567Z', '2024-03-02', '1709373600']) {
    rejects(t, () => validateEvent('BuildStarted', { build_id: 42, started_on: bad }), 'BuildStarted', '/data/started_on', /^must be an ISO-8601 UTC timestamp such as 2024-03-02T10:00:00Z/);
  }
  // Well formed, but no such day: PostgreSQL would refuse it in the projection.
  rejects(t, () => validateEvent('BuildStarted', { build_id: 42, started_on: '2023-02-29T10:00:00Z' }), 'BuildStarted', '/data/started_on', /^must be a real date and time/);
  rejects(t, () => validateEvent('BuildStarted', { build_id: 42, started_on: 1709373600 }), 'BuildStarted', '/data/started_on', /^must be a string \(got 1709373600\)$/);
});

test('extra field is not allowed, with a suggestion for a typo', (t) => {
  rejects(t, () => validateEvent('BuildStarted', { build_id: 42, started_on: '2024-03-02T10:00:05Z', extra: 1 }), 'BuildStarted', '/data/extra', /^is not allowed \(unknown field\)$/);
  const issues = rejects(t, () => validateEvent('BuildStarted', { buildid: 42, started_on: '2024-03-02T10:00:05Z' }), 'BuildStarted', '/data/buildid', /^is not allowed \(did you mean build_id\?\)$/);
  t.deepEqual(issues.map((i) => i.path), ['/data/build_id', '/data/buildid']);
});

test('optional fields may be absent or null, and say so when wrong', (t) => {
  const pkg = 'CondaPackageBuildRegistered';
  t.notThrows(() => validateEvent(pkg, withData(pkg, { constrains: undefined, subdir: undefined, timestamp: undefined })));
  t.notThrows(() => validateEvent(pkg, withData(pkg, { constrains: null, subdir: null, timestamp: null })));
  rejects(t, () => validateEvent(pkg, withData(pkg, { subdir: 64 })), pkg, '/data/subdir', /^must be a string or null \(got 64\)$/);
  rejects(t, () => validateEvent(pkg, withData(pkg, { constrains: ['a', 1] })), pkg, '/data/constrains/1', /^must be a string \(got 1\)$/);
  t.notThrows(() => validateEvent('SettingStored', withData('SettingStored', { value: null })));
});

test('id lists: empty allowed, duplicates refused', (t) => {
  t.notThrows(() => validateEvent('SolveCompleted', withData('SolveCompleted', { conda_package_build_ids: [] })));
  rejects(t, () => validateEvent('SolveCompleted', withData('SolveCompleted', { conda_package_build_ids: [1, 1] })), 'SolveCompleted', '/data/conda_package_build_ids', /^must not contain duplicates$/);
});

test('stream that does not match the data', (t) => {
  const envelope = envelopeFor('BuildStarted', samples.BuildStarted, { stream: 'build-43' });
  const issues = rejects(t, () => validateEnvelope(envelope), 'BuildStarted', '/stream', /^expected build-42 \(build-<build_id>\), got build-43$/);
  t.is(issues.length, 1);
  rejects(t, () => validateEnvelope({ ...envelopeFor('CondaPackageBuildRegistered'), stream: 'conda_package_build-1001' }), 'CondaPackageBuildRegistered', '/stream', /expected conda_package-7/);
});

test('malformed envelopes', (t) => {
  const { id: _, ...withoutId } = envelopeFor('BuildStarted');
  rejects(t, () => validateEnvelope(withoutId), 'BuildStarted', '/id', /^is required$/);
  rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), id: 'event-1' }), 'BuildStarted', '/id', /^must be a UUID/);
  for (const expectedVersion of [-1, 1.5, 2 ** 31, 'nostream', null]) {
    rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), expectedVersion }), 'BuildStarted', '/expectedVersion', /^must be a non-negative integer up to 2147483647 or one of no_stream, stream_exists, any/);
  }
  for (const expectedVersion of [0, 7, 'no_stream', 'stream_exists', 'any']) {
    t.notThrows(() => validateEnvelope({ ...envelopeFor('BuildStarted'), expectedVersion }), String(expectedVersion));
  }
  rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), expected_version: 'no_stream' }), 'BuildStarted', '/expected_version', /^is not allowed \(did you mean expectedVersion\?\)$/);
  rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), data: [] }), 'BuildStarted', '/data', /^must be an object \(got an array\)$/);
  rejects(t, () => validateEnvelope([]), undefined, '', /^must be an object/);
  rejects(t, () => validateEnvelope(null), undefined, '', /^must be an object/);
  rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), type: 7 }), undefined, '/type', /^must be a string/);
});

test('metadata: recognised keys are typed, others are free', (t) => {
  const envelope = (metadata: unknown) => ({ ...envelopeFor('BuildStarted'), metadata });
  t.notThrows(() =>
    validateEnvelope(envelope({ schema_version: 1, correlation_id: 'c-1', causation_id: 'e-0', producer: 'conda-store-worker', user: 'alice', trace: { span: 3 } })),
  );
  rejects(t, () => validateEnvelope(envelope({ schema_version: 0 })), 'BuildStarted', '/metadata/schema_version', /^must be >= 1/);
  rejects(t, () => validateEnvelope(envelope({ schema_version: '1' })), 'BuildStarted', '/metadata/schema_version', /^must be a positive integer/);
  rejects(t, () => validateEnvelope(envelope({ schema_version: 2 })), 'BuildStarted', '/metadata/schema_version', /^must be at most 1, the current version of BuildStarted \(got 2\)$/);
  rejects(t, () => validateEnvelope(envelope({ producer: 12 })), 'BuildStarted', '/metadata/producer', /^must be a string/);
  rejects(t, () => validateEnvelope(envelope('worker')), 'BuildStarted', '/metadata', /^must be an object/);
});

// Regression: NUL in nested JSON (spec, metadata_, a setting's value, depends), in a key or in
// metadata, and unpaired surrogates anywhere, passed validation; jsonb refuses them, so the event
// was acknowledged to its producer and then refused as "the database cannot store this event".
// Numbers beyond 2^53 in free-form JSON went in rounded, without a word.
test('what the log cannot keep as sent (NUL, an unpaired surrogate, a number beyond 2^53) is refused wherever it is, naming the place', (t) => {
  const spec = withData('SpecificationRegistered', { spec: { name: 'n', channels: ['conda-forge\u0000'] } });
  rejects(t, () => validateEvent('SpecificationRegistered', spec), 'SpecificationRegistered', '/data/spec/channels/0', /^must not contain NUL/);
  rejects(t, () => validateEvent('NamespaceMetadataUpdated', { namespace_id: 1, metadata_: { 'a/b\u0000': 1 } }), 'NamespaceMetadataUpdated', '/data/metadata_/a~1b\u0000', /^key: must not contain NUL/);
  rejects(t, () => validateEvent('SettingStored', withData('SettingStored', { value: { deep: [[{ s: 'x\udc00' }]] } })), 'SettingStored', '/data/value/deep/0/0/s', /^must be valid Unicode/);
  const pkg = 'CondaPackageBuildRegistered';
  rejects(t, () => validateEvent(pkg, withData(pkg, { depends: ['python >=3.8', 'numpy\u0000'] })), pkg, '/data/depends/1', /^must not contain NUL/);
  const envelope = (metadata: unknown) => ({ ...envelopeFor('BuildStarted'), metadata });
  rejects(t, () => validateEnvelope(envelope({ user: 'al\u0000ice' })), 'BuildStarted', '/metadata/user', /^must not contain NUL/);
  rejects(t, () => validateEnvelope(envelope({ trace: { span: '\ud83d' } })), 'BuildStarted', '/metadata/trace/span', /^must be valid Unicode/);
  // Numbers JSON.parse could not keep exactly (12345678901234567890 read as ...67000; 1e400 as Infinity, written as null).
  const big = withData('NamespaceMetadataUpdated', { metadata_: { big: 12345678901234567890, ok: [Number.MAX_SAFE_INTEGER, -1.5e-300] } });
  rejects(t, () => validateEvent('NamespaceMetadataUpdated', big), 'NamespaceMetadataUpdated', '/data/metadata_/big', /^must be a number from -9007199254740991 to 9007199254740991: a larger one is not kept exactly/);
  rejects(t, () => validateEvent('SettingStored', withData('SettingStored', { value: Infinity })), 'SettingStored', '/data/value', /^must be a number from/);
  rejects(t, () => validateEnvelope(envelope({ trace: { at: 2 ** 64 } })), 'BuildStarted', '/metadata/trace/at', /^must be a number from/);
  // A surrogate pair is one character (an emoji), and fine.
  t.notThrows(() => validateEnvelope(envelope({ trace: { span: '\u{1F40D}' } })));
  t.notThrows(() => validateEvent('SettingStored', withData('SettingStored', { value: { emoji: '\ud83d\udc0d', list: [null, 1.5, true] } })));
});

test('every issue is reported, not only the first', (t) => {
  const envelope = { id: 'nope', type: 'ArtifactStored', stream: 'build-42', data: { build_id: -1, artifact_type: 'TARBALL', key: 5, colour: 'red' } };
  const error = t.throws(() => validateEnvelope(envelope), { instanceOf: EventValidationError }) as EventValidationError;
  t.deepEqual(error.issues.map((i) => i.path).sort(), ['/data/artifact_type', '/data/build_artifact_id', '/data/build_id', '/data/colour', '/data/key', '/id']);
  t.regex(error.message, /^ArtifactStored: \/id: must be a UUID.*; \/data\/build_artifact_id: is required; /);
});

// ---------------------------------------------------------------------------------------------
// JSON Schemas

test('schemas/ is up to date with the catalogue (npm run schemas)', (t) => {
  const expected = jsonSchemaFiles();
  const onDisk = fs.readdirSync(schemasDir).filter((f) => f.endsWith('.json'));
  t.deepEqual(onDisk.sort(), [...expected.keys()].sort());
  for (const [name, content] of expected) t.is(fs.readFileSync(path.join(schemasDir, name), 'utf8'), content, `schemas/${name} is stale: run npm run schemas`);
  t.is(jsonSchemaFiles().get('BuildScheduled.json'), expected.get('BuildScheduled.json'), 'generation is deterministic');
});

// The published files are read by Ajv, a JSON Schema validator independent of TypeBox, as a
// producer in another language reads them (draft-07, with the formats' standard checks).
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;
const ajv = addFormats(new Ajv({ allErrors: true, allowUnionTypes: true, strict: true }));
const fileCheck = (name: string): ValidateFunction => {
  const document = JSON.parse(fs.readFileSync(path.join(schemasDir, `${name}.json`), 'utf8')) as { $id: string };
  return ajv.getSchema(document.$id) ?? ajv.compile(document);
};

test('each schema file, read by an independent validator (Ajv), accepts its sample and refuses an unknown field', (t) => {
  for (const type of EVENT_TYPES) {
    const check = fileCheck(type);
    const document = check.schema as Record<string, unknown>;
    t.is(document.title, type);
    t.is(document.$id, `urn:conda-store-events:schema:${type}`);
    t.truthy(document.description);
    t.true(check(samples[type]), `${type}: ${ajv.errorsText(check.errors)}`);
    t.false(check({ ...samples[type], not_a_field: 1 }), type);
  }
  const envelope = fileCheck('envelope');
  t.true(envelope({ ...envelopeFor('BuildScheduled'), expectedVersion: 'no_stream', metadata: { schema_version: 1, producer: 'test', trace: { span: [1] } } }));
  t.false(envelope({ ...envelopeFor('BuildScheduled'), id: 'not-a-uuid' }));
});

/**
 * Values a producer may get wrong, put in each field of each sample in turn: where the schema
 * files and the runtime validator disagree, a producer that checked its events with the files
 * would see them refused by the ingester after their acknowledgement (or the reverse).
 */
const EDGE_VALUES: unknown[] = [
  null, true, 0, -1, 1.5, 2 ** 31, 2 ** 53, '', 'x', 'x'.repeat(256), 'a\u0000b', 'line\n', '\u{1F40D}'.repeat(255),
  '2024-02-30T10:00:00Z', '2023-02-29T10:00:00Z', '2024-02-29T10:00:00Z', '0000-01-01T00:00:00Z', '2024-03-02T10:00:60Z', '2024-03-02T10:00:00Z', '2024-03-02T10:00:00.1234567Z', '2024-03-02T10:00:00+01:00',
  'ns/env', 'ns/env/x', '*/*', '5f0e6c2b9a8d7e4f1c3b2a0d9e8f7c6b', 'QUEUED', 'LOGS', 'admin', 'editor',
  [], [1, 1], [1, 2], ['a', 'b'], ['a\u0000'], {}, { k: 'v' }, { k: ['a\u0000'] }, { 'k\u0000': 1 }, { k: { k: null } },
  { k: 2 ** 53 - 1 }, { k: [-(2 ** 60)] }, { k: 1.5e300 }, { k: 0.1 },
];

/**
 * What the ingester makes of `data`: refused by the validator, refused by a rule between its fields
 * (data-rules.ts, checked at append), or taken. The one rule no JSON Schema states, a
 * SpecificationRegistered's name against its spec's, is told apart (see the test below).
 */
function runtimeVerdict(type: EventType, data: unknown): 'taken' | 'refused' | 'name rule' {
  try {
    const rule = brokenDataRule(validateEvent(type, data));
    if (rule === undefined) return 'taken';
    return rule.path === '/data/name' ? 'name rule' : 'refused';
  } catch {
    return 'refused';
  }
}

test('the schema files and the runtime validator with the append-time rules between fields agree on every edge value in every field (Ajv)', (t) => {
  let compared = 0;
  for (const type of EVENT_TYPES) {
    const check = fileCheck(type);
    const fields = Object.keys(samples[type]);
    const documents = [
      ...fields.flatMap((field) => EDGE_VALUES.map((value) => withData(type, { [field]: value }))),
      ...fields.map((field) => withData(type, { [field]: undefined })),
    ];
    for (const data of documents) {
      const runtime = runtimeVerdict(type, data);
      t.is(check(data), runtime !== 'refused', `${type} ${JSON.stringify(data)}: Ajv ${ajv.errorsText(check.errors)}, at runtime ${runtime}`);
      compared += 1;
    }
  }
  t.true(compared > 3000, `${compared} documents`);
  t.log(`${compared} documents compared`);
});

// The README's Python producer example sent build_key_version 3 without a hash: its validation
// against schemas/ passed, and the ingester refused the event after JetStream had taken it.
test('BuildScheduled.json states the hash rule of data-rules.ts: a hash exactly with build_key_version 3', (t) => {
  const check = fileCheck('BuildScheduled');
  const { hash, ...withoutHash } = samples.BuildScheduled;
  const cases: [Record<string, unknown>, boolean][] = [
    [{ ...withoutHash, build_key_version: 3, hash }, true],
    [{ ...withoutHash, build_key_version: 3 }, false],
    [{ ...withoutHash, build_key_version: 3, hash: null }, false],
    [{ ...withoutHash, build_key_version: 2 }, true],
    [{ ...withoutHash, build_key_version: 1, hash: null }, true],
    [{ ...withoutHash, build_key_version: 2, hash }, false],
  ];
  for (const [data, taken] of cases) {
    t.is(check(data), taken, JSON.stringify(data));
    t.is(runtimeVerdict('BuildScheduled', data), taken ? 'taken' : 'refused', JSON.stringify(data));
  }
});

test('the rule between fields no schema file can state: a SpecificationRegistered named otherwise than its spec passes the file, refused at append', (t) => {
  const data = withData('SpecificationRegistered', { name: 'another-name' });
  t.true(fileCheck('SpecificationRegistered')(data));
  t.is(runtimeVerdict('SpecificationRegistered', data), 'name rule');
});

test('the one difference left: an unpaired surrogate, refused at runtime only (no JSON Schema pattern can name one portably)', (t) => {
  const data = withData('EnvironmentCreated', { name: 'env\ud800' });
  t.true(fileCheck('EnvironmentCreated')(data));
  rejects(t, () => validateEvent('EnvironmentCreated', data), 'EnvironmentCreated', '/data/name', /^must be valid Unicode: it contains a UTF-16 surrogate without its pair/);
});

test('patterned strings carry the newline guard, for validators whose $ matches before a final newline (Python)', (t) => {
  const NO_NUL = '^[^\\x00]*$';
  let guarded = 0;
  const visit = (node: unknown, where: string) => {
    if (Array.isArray(node)) return node.forEach((item, i) => visit(item, `${where}/${i}`));
    if (node === null || typeof node !== 'object') return;
    const schema = node as Record<string, unknown>;
    if (schema.type === 'string' && typeof schema.pattern === 'string' && schema.pattern !== NO_NUL) {
      t.deepEqual(schema.not, { pattern: '\n' }, `${where}: pattern ${schema.pattern} without the guard`);
      guarded += 1;
    }
    for (const [key, value] of Object.entries(schema)) if (key !== 'not') visit(value, `${where}/${key}`);
  };
  for (const [name, content] of jsonSchemaFiles()) visit(JSON.parse(content), name);
  t.true(guarded >= 16, `${guarded} guarded fields`); // every timestamp, build.hash and the ARN
});
