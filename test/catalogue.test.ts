import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Type, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
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
  for (const expectedVersion of [-1, 1.5, 'nostream', null]) {
    rejects(t, () => validateEnvelope({ ...envelopeFor('BuildStarted'), expectedVersion }), 'BuildStarted', '/expectedVersion', /^must be a non-negative integer or one of no_stream, stream_exists, any/);
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

test('each schema file accepts its sample and refuses an unknown field', (t) => {
  for (const type of EVENT_TYPES) {
    const document = JSON.parse(fs.readFileSync(path.join(schemasDir, `${type}.json`), 'utf8')) as JsonSchema;
    t.is(document.title, type);
    t.is(document.$id, `urn:conda-store-events:schema:${type}`);
    t.truthy(document.description);
    const check = TypeCompiler.Compile(fromJsonSchema(document));
    t.true(check.Check(samples[type]), `${type}: ${[...check.Errors(samples[type])].map((e) => `${e.path} ${e.message}`).join(', ')}`);
    t.false(check.Check({ ...samples[type], not_a_field: 1 }), type);
  }
  const envelope = TypeCompiler.Compile(fromJsonSchema(JSON.parse(fs.readFileSync(path.join(schemasDir, 'envelope.json'), 'utf8')) as JsonSchema));
  t.true(envelope.Check({ ...envelopeFor('BuildScheduled'), expectedVersion: 'no_stream', metadata: { schema_version: 1, producer: 'test' } }));
  t.false(envelope.Check({ ...envelopeFor('BuildScheduled'), id: 'not-a-uuid' }));
});

type JsonSchema = Record<string, unknown>;

/**
 * Reads a JSON Schema file back into TypeBox, to check the files themselves (not the runtime
 * schemas they came from). Fails on any keyword it does not know, so that nothing is skipped.
 */
function fromJsonSchema(schema: JsonSchema): TSchema {
  const { $schema, $id, title, description, $comment, ...rest } = schema;
  const take = (...keys: string[]) => {
    const unknown = Object.keys(rest).filter((k) => !keys.includes(k));
    if (unknown.length) throw new Error(`unexpected keywords ${unknown.join(', ')} in ${JSON.stringify(schema)}`);
    return rest as Record<string, any>;
  };
  if ('anyOf' in rest) return Type.Union((take('anyOf').anyOf as JsonSchema[]).map(fromJsonSchema));
  if ('const' in rest) return Type.Literal(take('const', 'type').const);
  switch (rest.type) {
    case 'object': {
      const { properties = {}, required = [], additionalProperties } = take('type', 'properties', 'required', 'additionalProperties');
      const fields = Object.fromEntries(
        Object.entries(properties as Record<string, JsonSchema>).map(([k, v]) => [k, required.includes(k) ? fromJsonSchema(v) : Type.Optional(fromJsonSchema(v))]),
      );
      return Type.Object(fields, additionalProperties === false ? { additionalProperties: false } : {});
    }
    case 'array': {
      const { items, uniqueItems } = take('type', 'items', 'uniqueItems');
      return Type.Array(fromJsonSchema(items), uniqueItems ? { uniqueItems } : {});
    }
    case 'string': {
      const { type: _, ...options } = take('type', 'format', 'pattern', 'minLength', 'maxLength');
      return Type.String(options);
    }
    case 'integer': {
      const { type: _, ...options } = take('type', 'minimum', 'maximum');
      return Type.Integer(options);
    }
    case 'boolean':
      take('type');
      return Type.Boolean();
    case 'null':
      take('type');
      return Type.Null();
    case undefined:
      take();
      return Type.Unknown();
    default:
      throw new Error(`unexpected type ${String(rest.type)}`);
  }
}
