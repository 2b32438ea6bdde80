/**
 * Validation of envelopes and event data against the catalogue, with messages for humans: each
 * issue names the field (a JSON pointer such as /data/build_id) and what is wrong with it.
 */
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { ValueErrorType, type ValueError } from '@sinclair/typebox/errors';
import { FORMAT_PHRASES, phraseForPattern } from './common.js';
import { EnvelopeSchema, type Envelope } from './envelope.js';
import { definitionOf, EVENT_TYPES, isEventType, type CatalogueEvent, type EventType } from './events.js';
import { currentSchemaVersion, upcast } from './upcast.js';

export interface ValidationIssue {
  /** JSON pointer into the envelope: `/data/build_id`, `/stream`; `` for the whole value. */
  path: string;
  message: string;
}

export class EventValidationError extends Error {
  /** The event type, when the value names a known one. */
  readonly eventType: string | undefined;
  readonly issues: ValidationIssue[];

  /** Where the value was in a larger whole, when the caller said (`events[3]` of publishEvents). */
  readonly location: string | undefined;

  constructor(eventType: string | undefined, issues: ValidationIssue[], location?: string) {
    const message = `${eventType ?? 'envelope'}: ${issues.map((i) => `${i.path || '/'}: ${i.message}`).join('; ')}`;
    super(location === undefined ? message : `${location}: ${message}`);
    this.name = 'EventValidationError';
    this.eventType = eventType;
    this.issues = issues;
    this.location = location;
  }

  /** The same error, its value placed in a larger whole: the message starts with `location`. */
  at(location: string): EventValidationError {
    return new EventValidationError(this.eventType, this.issues, location);
  }
}

// Compiled once per schema, on first use: most processes only ever see a few event types.
const envelopeCheck = TypeCompiler.Compile(EnvelopeSchema);
const dataChecks = new Map<EventType, TypeCheck<TSchema>>();

function dataCheck(type: EventType): TypeCheck<TSchema> {
  let check = dataChecks.get(type);
  if (!check) {
    check = TypeCompiler.Compile(definitionOf(type).data);
    dataChecks.set(type, check);
  }
  return check;
}

/**
 * Validates a parsed JSON value as an envelope: its shape, a known type, the data against that
 * type's schema (after upcasting from metadata.schema_version), the stream against the data and
 * the recognised metadata keys. Returns it typed, its event id lowercase and a null metadata
 * left out (a copy when either changes anything), or throws EventValidationError with every issue.
 */
export function validateEnvelope(value: unknown): Envelope {
  const issues = issuesOf(envelopeCheck, value, '');
  if (!isObject(value)) throw new EventValidationError(undefined, issues);

  const type = typeof value.type === 'string' && isEventType(value.type) ? value.type : undefined;
  if (typeof value.type === 'string' && value.type !== '' && !type) issues.push(unknownType(value.type));

  if (type && isObject(value.data)) {
    const metadata = isObject(value.metadata) ? value.metadata : undefined;
    const version = metadata?.schema_version;
    const current = currentSchemaVersion(type);
    if (Number.isInteger(version) && (version as number) > current) {
      // envelope.json's limit (the latest version of any type) may have said so too, less precisely.
      remove(issues, '/metadata/schema_version');
      issues.push({
        path: '/metadata/schema_version',
        message: `must be at most ${current}, the current version of ${type} (got ${String(version)})`,
      });
    } else {
      const { data } = upcast({ type, data: value.data, metadata });
      const dataIssues = issuesOf(dataCheck(type), data, '/data');
      issues.push(...dataIssues);
      if (dataIssues.length === 0 && typeof value.stream === 'string') {
        const wrongStream = streamIssue(type, data, value.stream);
        if (wrongStream) issues.push(wrongStream);
      }
    }
  }

  if (issues.length === 0) issues.push(...unstorable(value.data, '/data'), ...unstorable(value.metadata, '/metadata'));
  if (issues.length) throw new EventValidationError(type, issues);
  // An event id is a UUID in either case; the log keeps and returns it in PostgreSQL's spelling,
  // lowercase. Every comparison of ids after this (a duplicate of an event in the log, the same
  // id twice in a batch) sees that spelling, so BuildStarted "ABC..." sent again after its build
  // completed is found in the log as the duplicate it is, not refused by the build's rule.
  // A null metadata is as absent: left out of the envelope returned.
  const envelope = value as unknown as Envelope;
  const id = envelope.id.toLowerCase();
  const nullMetadata = (value as { metadata?: unknown }).metadata === null;
  if (id === envelope.id && !nullMetadata) return envelope;
  const copy: Record<string, unknown> = { ...envelope, id };
  if (nullMetadata) delete copy.metadata;
  return copy as unknown as Envelope;
}

/**
 * The issue with `stream` for an event of `type` whose data (at the current schema version) is
 * `data`: the stream its data names (`build-42`) must be the one given. Undefined when it is.
 */
export function streamIssue(type: EventType, data: unknown, stream: string): ValidationIssue | undefined {
  const definition = definitionOf(type);
  const expected = (definition.streamOf as (data: unknown) => string)(data);
  return stream === expected ? undefined : { path: '/stream', message: `expected ${expected} (${definition.streamTemplate}), got ${stream}` };
}

/** Validates the data of an event of the given type (for producers that let the library fill in id and stream). */
export function validateEvent(type: string, data: unknown): CatalogueEvent {
  if (!isEventType(type)) throw new EventValidationError(undefined, [unknownType(type)]);
  const issues = issuesOf(dataCheck(type), data, '/data');
  if (issues.length === 0) issues.push(...unstorable(data, '/data'));
  if (issues.length) throw new EventValidationError(type, issues);
  return { type, data } as CatalogueEvent;
}

/** U+0000, or a UTF-16 surrogate without its pair (in `u` mode a pair is one code point, not Cs). */
const UNSTORABLE = /\x00|\p{Cs}/u;

/**
 * What of an event's data or metadata the log cannot keep as it was sent (common.ts, "JSON
 * fields"): a string or key with a NUL or an unpaired surrogate, which jsonb refuses; a number
 * beyond ±(2^53 - 1), which JSON.parse has already rounded (12345678901234567890 became
 * ...67000, 1e400 Infinity and then null). Checked once the schema holds, so that what a field's
 * own schema refused already is not named twice.
 */
export function unstorable(value: unknown, path: string): ValidationIssue[] {
  // Nearly every value has nothing to report: said by a walk that builds nothing (half the time
  // of the walk below, which a publisher and the ingester each run for every event).
  if (storable(value)) return [];
  const issues: ValidationIssue[] = [];
  // The path of the node in hand, as pointer segments: joined only for an issue (building a
  // string per node tripled the cost of validating an event).
  const segments: string[] = [];
  const here = () => path + segments.map((segment) => `/${escapePointer(segment)}`).join('');
  const visit = (node: unknown) => {
    if (typeof node === 'string') {
      if (UNSTORABLE.test(node)) issues.push({ path: here(), message: unstorableMessage(node) });
    } else if (typeof node === 'number') {
      if (!(Math.abs(node) <= Number.MAX_SAFE_INTEGER)) issues.push({ path: here(), message: INEXACT_NUMBER });
    } else if (Array.isArray(node)) {
      for (let index = 0; index < node.length; index++) {
        segments.push(String(index));
        visit(node[index]);
        segments.pop();
      }
    } else if (node !== null && typeof node === 'object') {
      for (const key in node) {
        if (!Object.hasOwn(node, key)) continue;
        segments.push(key);
        if (UNSTORABLE.test(key)) issues.push({ path: here(), message: `key: ${unstorableMessage(key)}` });
        visit((node as Record<string, unknown>)[key]);
        segments.pop();
      }
    }
  };
  visit(value);
  return issues;
}

/** A NUL, or any surrogate (a pair too: the walk of unstorable tells a pair from a lone one). */
const SUSPECT = /[\u0000\uD800-\uDFFF]/;

/** Whether nothing in `node` can be unstorable (false: it may be; unstorable says what). */
function storable(node: unknown): boolean {
  if (typeof node === 'string') return !SUSPECT.test(node);
  if (typeof node === 'number') return Math.abs(node) <= Number.MAX_SAFE_INTEGER;
  if (node === null || typeof node !== 'object') return true;
  if (Array.isArray(node)) {
    for (let index = 0; index < node.length; index++) if (!storable(node[index])) return false;
    return true;
  }
  for (const key in node) {
    if (Object.hasOwn(node, key) && (SUSPECT.test(key) || !storable((node as Record<string, unknown>)[key]))) return false;
  }
  return true;
}

const INEXACT_NUMBER = `must be a number from -${Number.MAX_SAFE_INTEGER} to ${Number.MAX_SAFE_INTEGER}: a larger one is not kept exactly (send it as a string)`;

function unstorableMessage(text: string): string {
  return text.includes('\u0000')
    ? 'must not contain NUL (U+0000) characters'
    : 'must be valid Unicode: it contains a UTF-16 surrogate without its pair, which PostgreSQL cannot store';
}

function remove(issues: ValidationIssue[], path: string): void {
  for (let i = issues.length - 1; i >= 0; i--) if (issues[i]!.path === path) issues.splice(i, 1);
}

// ---------------------------------------------------------------------------------------------
// From TypeBox errors to issues.

function issuesOf(check: TypeCheck<TSchema>, value: unknown, prefix: string): ValidationIssue[] {
  if (check.Check(value)) return [];
  const byPath = new Map<string, Problem[]>();
  for (const problem of [...check.Errors(value)].flatMap((error) => expand(error, false))) {
    if (withinMaxLength(problem.error)) continue;
    const problems = byPath.get(problem.error.path) ?? [];
    problems.push(problem);
    byPath.set(problem.error.path, problems);
  }
  const issues: ValidationIssue[] = [];
  for (const [path, problems] of byPath) {
    const kinds = new Set(problems.map((p) => p.error.type));
    // A missing field also fails its type check (undefined is not an integer): "is required" says it all.
    // A timestamp that fails its pattern also fails its format: the pattern's phrase is the useful one.
    const relevant = kinds.has(ValueErrorType.ObjectRequiredProperty)
      ? problems.filter((p) => p.error.type === ValueErrorType.ObjectRequiredProperty)
      : kinds.has(ValueErrorType.StringPattern)
        ? problems.filter((p) => p.error.type !== ValueErrorType.StringFormat)
        : problems;
    for (const message of new Set(relevant.map(describe))) issues.push({ path: prefix + path, message });
  }
  return issues;
}

/**
 * The characters of a string as JSON Schema, Python's len() and PostgreSQL's varchar(n) count
 * them: code points. TypeBox counts UTF-16 code units, two for a character outside the Basic
 * Multilingual Plane (an emoji), and would refuse a 255-character name that the published schema,
 * a Python producer and the column all take.
 */
export function characterCount(text: string): number {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

/** A maxLength error of TypeBox's for a string whose characters are within the limit (characterCount). */
function withinMaxLength(error: ValueError): boolean {
  return error.type === ValueErrorType.StringMaxLength && typeof error.value === 'string' && characterCount(error.value) <= error.schema.maxLength;
}

interface Problem {
  error: ValueError;
  /** The field is optional-or-null (`x?` in events.md): a wrong type message says null is fine too. */
  orNull: boolean;
}

/** An optional field is `T | null`; when the value is not null, what matters is why it is not a T. */
function expand(error: ValueError, orNull: boolean): Problem[] {
  if (error.type === ValueErrorType.Union && error.value !== null) {
    const branches = (error.schema.anyOf ?? []) as TSchema[];
    const real = branches.findIndex((b) => b.type !== 'null');
    if (branches.length === 2 && branches.some((b) => b.type === 'null') && error.errors[real]) {
      return [...error.errors[real]].flatMap((inner) => expand(inner, inner.path === error.path));
    }
  }
  return [{ error, orNull }];
}

const TYPE_MISMATCH = new Set([
  ValueErrorType.Integer,
  ValueErrorType.Number,
  ValueErrorType.String,
  ValueErrorType.Boolean,
  ValueErrorType.Null,
  ValueErrorType.Array,
  ValueErrorType.Object,
  ValueErrorType.Literal,
  ValueErrorType.Union,
]);

function describe({ error, orNull }: Problem): string {
  const { schema, value } = error;
  if (TYPE_MISMATCH.has(error.type)) return `must be ${describeSchema(schema)}${orNull ? ' or null' : ''}${got(value)}`;
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.ObjectAdditionalProperties: {
      const field = unescapePointer(error.path.slice(error.path.lastIndexOf('/') + 1));
      const suggestion = closest(field, Object.keys(schema.properties ?? {}));
      return suggestion ? `is not allowed (did you mean ${suggestion}?)` : 'is not allowed (unknown field)';
    }
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be >= ${schema.minimum}${got(value)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be <= ${schema.maximum}${got(value)}`;
    case ValueErrorType.StringMinLength:
      return schema.minLength === 1 ? 'must not be empty' : `must be at least ${schema.minLength} characters (got ${characterCount(String(value))})`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${schema.maxLength} characters (got ${characterCount(String(value))})`;
    case ValueErrorType.StringPattern:
      return `${phraseForPattern(schema.pattern) ?? `must match the pattern ${schema.pattern}`}${got(value)}`;
    case ValueErrorType.StringFormat:
      return `${FORMAT_PHRASES[schema.format] ?? `must be a valid ${schema.format}`}${got(value)}`;
    case ValueErrorType.ArrayUniqueItems:
      return 'must not contain duplicates';
    default:
      return error.message;
  }
}

/** "a positive integer", "one of QUEUED, BUILDING", "a non-negative integer or one of no_stream, any". */
function describeSchema(schema: TSchema, inUnion = false): string {
  if (Array.isArray(schema.anyOf)) {
    const branches = schema.anyOf as TSchema[];
    const values = branches.filter((b) => 'const' in b).map((b) => String(b.const));
    const others = branches.filter((b) => !('const' in b)).map((b) => describeSchema(b, true));
    return [...others, ...(values.length ? [`one of ${values.join(', ')}`] : [])].join(' or ');
  }
  if ('const' in schema) return String(schema.const);
  switch (schema.type) {
    case 'integer': {
      const kind = schema.minimum === 1 ? 'a positive integer' : schema.minimum === 0 ? 'a non-negative integer' : 'an integer';
      // A union names no branch's bounds otherwise (an integer field alone says "must be <= N").
      return !inUnion || schema.maximum === undefined || schema.maximum >= Number.MAX_SAFE_INTEGER ? kind : `${kind} up to ${schema.maximum}`;
    }
    case 'number':
      return 'a number';
    case 'string':
      return 'a string';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'null';
    case 'array':
      return 'an array';
    case 'object':
      return 'an object';
    default:
      return 'valid';
  }
}

function got(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return ` (got ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  if (Array.isArray(value)) return ' (got an array)';
  if (value !== null && typeof value === 'object') return ' (got an object)';
  return ` (got ${String(value)})`;
}

function unknownType(type: string): ValidationIssue {
  const suggestion = closest(type, EVENT_TYPES);
  return {
    path: '/type',
    message: `unknown event type ${JSON.stringify(type)}${suggestion ? ` (did you mean ${suggestion}?)` : ''}`,
  };
}

/** The candidate nearest to a misspelt name, if one is near enough to be what was meant. */
function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const candidate of candidates) {
    const distance = levenshtein(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = row;
  }
  return previous[b.length]!;
}

function escapePointer(segment: string): string {
  return segment.replace(/~/g, '~0').replace(/\//g, '~1');
}

function unescapePointer(segment: string): string {
  return segment.replace(/~1/g, '/').replace(/~0/g, '~');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
