/**
 * Upcasting: an event stored under an older schema_version is brought to the current version
 * when it is read, here and nowhere else; the log itself is never rewritten.
 *
 * To change an event type's data incompatibly, add one entry
 * `upcasters.SomeEvent[n] = (data) => <data of version n + 1>`; the current version of the type
 * becomes n + 1, and producers then send `metadata.schema_version: n + 1`.
 */
import type { EventType } from './events.js';

type Upcaster = (data: Record<string, unknown>) => Record<string, unknown>;

/** Per event type, per version it upgrades from. Empty: every type is at version 1. */
const upcasters: { readonly [T in EventType]?: { readonly [fromVersion: number]: Upcaster } } = {};

export interface StoredEvent {
  type: string;
  data: unknown;
  metadata?: Record<string, unknown> | undefined;
}

/** The version producers send today; events without metadata.schema_version are version 1. */
export function currentSchemaVersion(type: EventType): number {
  const versions = Object.keys(upcasters[type] ?? {}).map(Number);
  return versions.length ? Math.max(...versions) + 1 : 1;
}

/** How a reader brings stored events to their type's current version (upcast, or a test's own). */
export type Upcast = <E extends StoredEvent>(event: E) => E;

/** Brings an event to the current version of its type; events already current (all of them, today) are returned as they are. */
export function upcast<E extends StoredEvent>(event: E): E {
  const steps = (upcasters as Record<string, Record<number, Upcaster> | undefined>)[event.type];
  if (!steps) return event;
  const declared = event.metadata?.schema_version;
  const from = typeof declared === 'number' ? declared : 1;
  let version = from;
  let data = event.data as Record<string, unknown>;
  for (let step = steps[version]; step; step = steps[version]) {
    data = step(data);
    version += 1;
  }
  return version === from ? event : { ...event, data, metadata: { ...event.metadata, schema_version: version } };
}
