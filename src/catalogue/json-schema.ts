/** The JSON Schema files of schemas/, for producers in other languages: derived from the catalogue, never edited by hand. */
import type { TSchema } from '@sinclair/typebox';
import { STORABLE_JSON, STORABLE_JSON_DEFINITION, STORABLE_JSON_REF } from './common.js';
import { EnvelopeSchema } from './envelope.js';
import { definitionOf, EVENT_TYPES } from './events.js';

/** Draft-07: nothing newer is needed, and every language's validators support it. */
const DIALECT = 'http://json-schema.org/draft-07/schema#';
const GENERATED = 'Generated from src/catalogue by `npm run schemas`; do not edit.';

export const schemaId = (name: string) => `urn:conda-store-events:schema:${name}`;

/** File name → content: `<EventType>.json` for every event type (the schema of its data), and `envelope.json`. */
export function jsonSchemaFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const type of EVENT_TYPES) {
    const { data, description, streamTemplate } = definitionOf(type);
    files.set(`${type}.json`, render(type, `${description} Stream: ${streamTemplate}.`, data));
  }
  files.set(
    'envelope.json',
    render(
      'envelope',
      'An event as producers send it: the message body on condastore.events.<type>, and a line of `append`/`export` NDJSON.',
      EnvelopeSchema,
    ),
  );
  return files;
}

function render(name: string, description: string, schema: TSchema): string {
  const body = plain(schema);
  // A file whose JSON fields refer to the definition of storable JSON carries it (common.ts).
  const definitions = JSON.stringify(body).includes(STORABLE_JSON_REF) ? { definitions: { [STORABLE_JSON]: STORABLE_JSON_DEFINITION } } : {};
  const document = { $schema: DIALECT, $id: schemaId(name), title: name, description, $comment: GENERATED, ...body, ...definitions };
  return `${JSON.stringify(ordered(document), null, 2)}\n`;
}

/** TypeBox schemas are JSON Schema plus symbol keys, which JSON drops. */
function plain(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>;
}

/** Keywords in reading order (TypeBox puts options first); fields keep their events.md order. */
const KEYWORD_ORDER = [
  '$schema', '$id', 'title', 'description', '$comment', 'type', 'const', 'format', 'pattern', 'minLength', 'maxLength',
  'minimum', 'maximum', 'items', 'uniqueItems', 'properties', 'required', 'additionalProperties', 'anyOf',
];
const rank = (key: string) => (KEYWORD_ORDER.includes(key) ? KEYWORD_ORDER.indexOf(key) : KEYWORD_ORDER.length);

function ordered(schema: Record<string, unknown>): Record<string, unknown> {
  const keys = Object.keys(schema).sort((a, b) => rank(a) - rank(b));
  return Object.fromEntries(
    keys.map((key) => {
      const value = schema[key];
      if (key === 'properties') return [key, mapValues(value as Record<string, Record<string, unknown>>, ordered)];
      if (key === 'anyOf') return [key, (value as Record<string, unknown>[]).map(ordered)];
      if ((key === 'items' || key === 'additionalProperties') && typeof value === 'object') return [key, ordered(value as Record<string, unknown>)];
      return [key, value];
    }),
  );
}

function mapValues<V, W>(record: Record<string, V>, fn: (v: V) => W): Record<string, W> {
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, fn(v)]));
}
