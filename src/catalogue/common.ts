/**
 * Field schemas shared by the event files. Each one mirrors the column its field ends up in
 * (conda-store-tables.md), so that an event accepted into the log always fits its projection.
 */
import {
  FormatRegistry,
  Type,
  type SchemaOptions,
  type StringOptions,
  type TLiteral,
  type TNull,
  type TOptional,
  type TSchema,
  type TUnion,
} from '@sinclair/typebox';

/** `integer` columns are int4. */
export const MAX_INT4 = 2_147_483_647;

// ---------------------------------------------------------------------------------------------
// Patterns, with the phrase an error message uses for each (a bare regex is no help to a human).

const patternPhrases = new Map<string, string>();

function pattern(regex: string, phrase: string): string {
  patternPhrases.set(regex, phrase);
  return regex;
}

/** The human phrase for a pattern of this file, if it is one. */
export function phraseForPattern(regex: string): string | undefined {
  return patternPhrases.get(regex);
}

/**
 * PostgreSQL text cannot hold U+0000: such a string would be accepted here and then fail its
 * projection. `[0-9]`-style classes and no look-arounds keep the patterns portable to the JSON
 * Schema validators of other languages (Python's `\d` matches non-ASCII digits; Go has no
 * look-arounds, and no `\u` escape: NUL is `\x00`).
 */
const NO_NUL = pattern('^[^\\x00]*$', 'must not contain NUL (U+0000) characters');

/**
 * Python's `$` (which JSON Schema validators in Python use) also matches before a final newline,
 * so `^...$` lets "2024-03-02T10:00:00Z\n" through there while JavaScript refuses it. Each pattern
 * that restricts a string's characters carries this guard as well (`not`), which reads the same in
 * every language; TypeBox ignores it, and its own `$` refuses such a string already.
 */
const NO_NEWLINE = { not: { pattern: '\n' } };

/**
 * UTC only (`Z` or `+00:00`), because projections store timestamps in `timestamp without time
 * zone`; at most 6 fractional digits, PostgreSQL's precision, so nothing is silently rounded. No
 * year 0000, which PostgreSQL has not: spelt out in the pattern, as validators of other languages
 * check date-time formats differently (Ajv takes year 0, Python's rfc3339-validator does not).
 */
const YEAR = '([0-9]{3}[1-9]|[0-9]{2}[1-9][0-9]|[0-9][1-9][0-9]{2}|[1-9][0-9]{3})';
export const TIMESTAMP_PATTERN = pattern(
  `^${YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|\\+00:00)$`,
  'must be an ISO-8601 UTC timestamp such as 2024-03-02T10:00:00Z or 2024-03-02T10:00:00.123456+00:00',
);

export const UUID_PATTERN = pattern(
  '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$',
  'must be a UUID such as 0b5e8c1e-6f3a-4d2b-9c47-1a2b3c4d5e6f',
);

/** build.hash (build key version 3): the first 32 hex digits of a sha256 (Python `hexdigest()`). */
const BUILD_HASH_PATTERN = pattern('^[0-9a-f]{32}$', 'must be 32 lowercase hexadecimal digits');

/**
 * namespace_role_mapping.entity, an ARN `<namespace-glob>/<name-glob>`, which conda-store's ORM
 * checks against its ARN_ALLOWED. Its characters changed over releases (letters, digits and
 * `-+_@$&?^~.=` today, `|<>` in earlier ones; `*` in every one): this accepts all of them, so no
 * entity a conda-store release took is refused, and refuses what none took (a space, a second
 * `/`, an empty side).
 */
export const ARN_PATTERN = pattern(
  '^[A-Za-z0-9+_@$&?^~.=|<>*-]+/[A-Za-z0-9+_@$&?^~.=|<>*-]+$',
  'must be an ARN <namespace>/<environment> such as data-team/* (letters, digits, -+_@$&?^~.=|<> and the wildcard *)',
);

// ---------------------------------------------------------------------------------------------
// Formats. TypeBox refuses unknown formats, so the two used here are registered. Each keeps the
// standard meaning of its name (the patterns above add the stricter rules), so that another
// module relying on these formats sees no surprise.

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** An RFC 3339 date-time that names a real instant (no February 30). Year 0 is refused: PostgreSQL has none. */
export function isDateTime(value: string): boolean {
  const m = RFC3339.exec(value);
  if (!m) return false;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth && hour <= 23 && minute <= 59 && second <= 60;
}

FormatRegistry.Set('date-time', isDateTime);
FormatRegistry.Set('uuid', (value) => new RegExp(UUID_PATTERN).test(value));

export const FORMAT_PHRASES: Record<string, string> = {
  'date-time': 'must be a real date and time',
  uuid: 'must be a UUID',
};

// ---------------------------------------------------------------------------------------------
// Field schemas. Functions rather than constants so each use can add its own description.

/** A positive id, as handed out by the allocator; `integer` (int4) column. */
export const Id = (options: SchemaOptions = {}) => Type.Integer({ minimum: 1, maximum: MAX_INT4, ...options });

/** Ids of rows linked to this one (a build's or a solve's package builds): no duplicates, since each becomes a primary-key row. */
export const IdList = (options: SchemaOptions = {}) => Type.Array(Id(), { uniqueItems: true, ...options });

/** `bigint` columns (sizes, byte counts, repodata timestamps): non-negative, and exact in a JS number. */
export const BigCount = (options: SchemaOptions = {}) =>
  Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, ...options });

/** A non-negative `integer` (int4) column that is not an id (build_number). */
export const Count = (options: SchemaOptions = {}) => Type.Integer({ minimum: 0, maximum: MAX_INT4, ...options });

/** A `DateTime` column: see TIMESTAMP_PATTERN. */
export const Timestamp = (options: SchemaOptions = {}) =>
  Type.String({ format: 'date-time', pattern: TIMESTAMP_PATTERN, ...NO_NEWLINE, description: 'ISO-8601 UTC timestamp, e.g. 2024-03-02T10:00:00Z', ...options });

/** A `Unicode(n)` (varchar(n)) column. */
export const Varchar = (maxLength: number, options: StringOptions = {}) => Type.String({ maxLength, pattern: NO_NUL, ...options });

/** A `Unicode`/`UnicodeText`/`Text` column: no length limit. */
export const Text = (options: StringOptions = {}) => Type.String({ pattern: NO_NUL, ...options });

/** A name with a unique constraint (namespace, environment, channel, package): `Unicode(255)`, never empty. */
export const Name = (options: StringOptions = {}) => Varchar(255, { minLength: 1, ...options });

/** A 32-hex build key (build.hash, `Unicode(32)`). */
export const BuildHash = (options: StringOptions = {}) =>
  Type.String({ maxLength: 32, pattern: BUILD_HASH_PATTERN, ...NO_NEWLINE, ...options });

export const Uuid = (options: StringOptions = {}) => Type.String({ format: 'uuid', pattern: UUID_PATTERN, ...NO_NEWLINE, ...options });

/** namespace_role_mapping.entity (`Unicode(255)`): see ARN_PATTERN. */
export const Arn = (options: StringOptions = {}) => Varchar(255, { pattern: ARN_PATTERN, ...NO_NEWLINE, ...options });

// JSON fields. The log stores an event as jsonb, which refuses a NUL (U+0000) anywhere in a
// string or a key, and an unpaired UTF-16 surrogate (which is not Unicode): an event holding one
// could never go in. The JSON Schemas say so for NUL, down to the last nested value, through the
// definition STORABLE_JSON_REF points to (json-schema.ts adds it to the files that use it), and
// bound numbers to what JSON.parse keeps exactly; the runtime validator checks all three,
// everywhere in an event, in one walk (validate.ts, unstorable): no JSON Schema pattern can name a
// surrogate portably (Go's regexps have none).

/** The definition of a JSON value without NUL, which the schema files that use it carry (json-schema.ts). */
export const STORABLE_JSON = 'storable_json';
export const STORABLE_JSON_REF = `#/definitions/${STORABLE_JSON}`;

/** The keys of a JSON object (TypeBox ignores propertyNames; validate.ts checks the keys). */
export const NO_NUL_KEYS = { propertyNames: { pattern: NO_NUL } };

export const STORABLE_JSON_DEFINITION = {
  description:
    'any JSON value; no string in it, key or value, contains NUL (U+0000), which PostgreSQL cannot store, and no number is beyond ±(2^53 - 1), which could not be kept exactly',
  anyOf: [
    { type: 'string', pattern: NO_NUL },
    // A JSON number is read into a double here: beyond 2^53 - 1 an integer is not kept exactly.
    { type: 'number', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
    { type: ['boolean', 'null'] },
    { type: 'array', items: { $ref: STORABLE_JSON_REF } },
    { type: 'object', ...NO_NUL_KEYS, additionalProperties: { $ref: STORABLE_JSON_REF } },
  ],
};

/** Any value of a JSON field: its schema is the definition (TypeBox ignores the reference; validate.ts checks the strings). */
export const StorableJsonValue = (options: SchemaOptions = {}) => Type.Unknown({ allOf: [{ $ref: STORABLE_JSON_REF }], ...options });

/** A `JSON` column holding an object (spec, metadata_). */
export const JsonObject = (options: SchemaOptions = {}) =>
  Type.Unsafe<Record<string, unknown>>(Type.Object({}, { ...NO_NUL_KEYS, additionalProperties: StorableJsonValue(), ...options }));

/** A `JSON` column holding a list of strings (depends, constrains). */
export const StringList = (options: SchemaOptions = {}) => Type.Array(Text(), options);

/** Any JSON value, null included (keyvaluestore.value). */
export const JsonValue = (options: SchemaOptions = {}) => StorableJsonValue(options);

/** One of a fixed list of values (an enum column or a validated string). */
export function OneOf<const V extends string | number>(values: readonly V[], options: SchemaOptions = {}): TUnion<TLiteral<V>[]> {
  return Type.Union(
    values.map((v) => Type.Literal(v)),
    options,
  );
}

/**
 * A field marked `?` in events.md: it may be absent or null, both meaning NULL (or the column
 * default) in the table. Null is accepted because Python producers naturally send `None`.
 */
export function Optional<S extends TSchema>(schema: S): TOptional<TUnion<[S, TNull]>> {
  // The description belongs to the field, not to one branch of it (it reads better in the JSON Schema).
  const { description, ...inner } = schema;
  return Type.Optional(Type.Union([inner as S, Type.Null()], description === undefined ? {} : { description }));
}

// ---------------------------------------------------------------------------------------------
// Enumerations (conda-store's schema.py and auth).

export const BUILD_STATUSES = ['QUEUED', 'BUILDING', 'COMPLETED', 'FAILED', 'CANCELED'] as const;
export type BuildStatus = (typeof BUILD_STATUSES)[number];

/** BuildArtifactType names, in the enum's order (CONTAINER_REGISTRY and DOCKER_BLOB are legacy). */
export const ARTIFACT_TYPES = [
  'DIRECTORY',
  'LOCKFILE',
  'LOGS',
  'YAML',
  'CONDA_PACK',
  'DOCKER_MANIFEST',
  'CONSTRUCTOR_INSTALLER',
  'CONTAINER_REGISTRY',
  'DOCKER_BLOB',
] as const;
export type ArtifactType = (typeof ARTIFACT_TYPES)[number];

export const BUILD_KEY_VERSIONS = [1, 2, 3] as const;

/** `editor` is conda-store's input alias of `developer`: accepted here, stored as developer by the projection. */
export const ROLES = ['admin', 'viewer', 'developer', 'editor'] as const;
export type Role = (typeof ROLES)[number];
