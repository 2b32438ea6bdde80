/** The catalogue: every event type, listed once, with the types derived from it. */
import type { Static } from '@sinclair/typebox';
import { buildEvents } from './build.js';
import { channelEvents } from './channel.js';
import type { EventSpec } from './define.js';
import { environmentEvents } from './environment.js';
import type { AggregateKind } from './kinds.js';
import { namespaceEvents } from './namespace.js';
import { serverStateEvents } from './server-state.js';
import { solveEvents } from './solve.js';
import { specificationEvents } from './specification.js';

const aggregates = [
  namespaceEvents,
  environmentEvents,
  specificationEvents,
  buildEvents,
  channelEvents,
  solveEvents,
  serverStateEvents,
] as const;

const specs = {
  ...namespaceEvents,
  ...environmentEvents,
  ...specificationEvents,
  ...buildEvents,
  ...channelEvents,
  ...solveEvents,
  ...serverStateEvents,
};
type Specs = typeof specs;

/** Union of all event type names. */
export type EventType = keyof Specs;

/** The data of an event of type T. */
export type EventData<T extends EventType> = Static<Specs[T]['data']>;

export interface EventDefinition<T extends EventType = EventType> {
  type: T;
  kind: AggregateKind;
  /** The TypeBox schema of `data` (a JSON Schema object). */
  data: Specs[T]['data'];
  /** One line: the event's effect on the tables. */
  description: string;
  /** The stream name with its data field in angle brackets, e.g. `build-<build_id>`. */
  streamTemplate: string;
  /** The stream an event with this data belongs to. */
  streamOf(data: EventData<T>): string;
}

// A type listed by two files would silently shadow the first one in the spread above.
const listed = aggregates.flatMap((a) => Object.keys(a));
const duplicate = listed.find((type, i) => listed.indexOf(type) !== i);
if (duplicate) throw new Error(`event type ${duplicate} is defined twice in the catalogue`);

export const catalogue = Object.fromEntries(
  Object.entries(specs).map(([type, spec]: [string, EventSpec]) => [type, { type, ...spec }]),
) as unknown as { readonly [T in EventType]: EventDefinition<T> };

export const EVENT_TYPES = Object.freeze(Object.keys(specs)) as readonly EventType[];

/** A type and its data, discriminated by type. */
export type CatalogueEvent = { [T in EventType]: { type: T; data: EventData<T> } }[EventType];

export function isEventType(x: string): x is EventType {
  return Object.hasOwn(catalogue, x);
}

/** The definition of a type, without the per-type generic (for code that handles any event). */
export function definitionOf(type: EventType): EventDefinition {
  return catalogue[type] as unknown as EventDefinition;
}

/** The stream an event belongs to, from its data: `build-42`. */
export function streamOf(event: CatalogueEvent): string {
  return (definitionOf(event.type).streamOf as (data: unknown) => string)(event.data);
}
