import { Type, type ObjectOptions, type Static, type TInteger, type TObject, type TProperties, type TSchema, type TString } from '@sinclair/typebox';
import type { AggregateKind } from './kinds.js';

/** What an event file declares for one event type; index.ts adds the type name (the key it is listed under). */
export interface EventSpec<S extends TSchema = TObject> {
  kind: AggregateKind;
  /** One line: the event's effect on the tables (events.md). */
  description: string;
  /** The schema of `data`: the static type, the validator and the JSON Schema all come from it. */
  data: S;
  /** The stream name, with the data field it is made of in angle brackets: `build-<build_id>`. */
  streamTemplate: string;
  streamOf(data: Static<S>): string;
}

/**
 * A rule between fields that JSON Schema can state (`if`/`then`/`else`), put in the event's JSON
 * Schema file so that a producer validating against schemas/ finds it before it publishes. The
 * catalogue's validator does not read these keywords: src/decide/data-rules.ts checks the same
 * rule at append, with the reason in words.
 */
export type FieldRule = Partial<Pick<ObjectOptions, 'if' | 'then' | 'else'>>;

/** Data objects refuse unknown fields, so that a typo in a field name is an error, not a lost value. */
function spec<P extends TProperties>(
  kind: AggregateKind,
  description: string,
  properties: P,
  streamTemplate: string,
  streamOf: (data: Static<TObject<P>>) => string,
  rule: FieldRule = {},
): EventSpec<TObject<P>> {
  return { kind, description, data: Type.Object(properties, { additionalProperties: false, ...rule }), streamTemplate, streamOf };
}

/** The events of an aggregate whose stream is `<kind>-<data[field]>`; the type demands that every event carries the field. */
export function aggregate<F extends string>(kind: AggregateKind, field: F) {
  return {
    event<P extends TProperties & Record<F, TInteger | TString>>(description: string, properties: P, rule?: FieldRule): EventSpec<TObject<P>> {
      return spec(kind, description, properties, `${kind}-<${field}>`, (data) => `${kind}-${(data as unknown as Record<F, unknown>)[field]}`, rule);
    },
  };
}

/** The events of an aggregate that exists once: its single stream is named after its kind. */
export function singleton(kind: AggregateKind) {
  return {
    event<P extends TProperties>(description: string, properties: P): EventSpec<TObject<P>> {
      return spec(kind, description, properties, kind, () => kind);
    },
  };
}
