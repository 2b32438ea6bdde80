/**
 * Runs events through the handlers of condaStoreProjections, in the order the runner applies
 * them, without a database: what each module would write, as `[moduleName, change]` pairs.
 */
import { catalogue, type Envelope, type EventData, type EventType } from '../../src/catalogue/index.js';
import { changesFor, type ProjectedEvent, type RowChange } from '../../src/projection/definition.js';
import { condaStoreProjections } from '../../projections/index.js';

export type ModuleChange = [moduleName: string, change: RowChange];

/** The event as a handler sees it, at a position of the log (its stream version is not used by handlers). */
export function projectedEvent<T extends EventType>(type: T, data: EventData<T>, globalPosition = 1, streamVersion = 0): ProjectedEvent<T> {
  const stream = (catalogue[type].streamOf as (data: unknown) => string)(data);
  return { type, data, stream, streamVersion, globalPosition, metadata: {} };
}

/** The changes of one event, module after module in condaStoreProjections order. */
export function project<T extends EventType>(type: T, data: EventData<T>, globalPosition = 1): ModuleChange[] {
  const event = projectedEvent(type, data, globalPosition) as unknown as ProjectedEvent;
  return condaStoreProjections.flatMap((projection) =>
    changesFor(projection, event).map((change): ModuleChange => [projection.name, change]),
  );
}

/** The changes of a history, event after event, positions counted from 1. */
export function projectAll(events: readonly Envelope[]): ModuleChange[] {
  return events.flatMap((event, i) => project(event.type, event.data as EventData<typeof event.type>, i + 1));
}
