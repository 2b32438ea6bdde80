/**
 * What a projection declares: its tables, the event types it handles and, for each, a pure
 * function from the event to row changes. The runner (runner.ts) alone decides how the changes
 * reach PostgreSQL: batched, set-based, with the checkpoint in the same transaction.
 */
import type { EventData, EventType } from '../catalogue/index.js';

export type Row = Record<string, unknown>;

/**
 * A row change. Values are plain JSON values as events carry them (ISO timestamps, numbers,
 * objects for json columns); the runner casts them to the column types.
 */
export type RowChange =
  /** INSERT a row. */
  | { op: 'insert'; table: string; row: Row }
  /** INSERT, or on a conflict on `key` UPDATE the columns `update` (default: all but the key). */
  | { op: 'upsert'; table: string; row: Row; key: string[]; update?: string[] }
  /** UPDATE the rows matching `where` (column = value, all of them). */
  | { op: 'update'; table: string; where: Row; set: Row }
  /** DELETE the rows matching `where`. */
  | { op: 'delete'; table: string; where: Row }
  /**
   * One set-based statement for what the shapes above cannot say (a soft delete that follows
   * foreign keys). `$1..$n` are `values`. It must only touch the projection's own tables.
   * `insertsId`: the id of a row it may insert, so the runner keeps the id sequence past it.
   */
  | { op: 'sql'; table: string; text: string; values: unknown[]; insertsId?: number };

/** An event as handlers see it: typed data, plus where it sits in the log. */
export interface ProjectedEvent<T extends EventType = EventType> {
  type: T;
  data: EventData<T>;
  stream: string;
  streamVersion: number;
  globalPosition: number;
  metadata: Record<string, unknown>;
}

export type Handler<T extends EventType> = (event: ProjectedEvent<T>) => RowChange[];
export type Handlers = { [T in EventType]?: Handler<T> };

export interface ProjectionDefinition {
  /** Unique name, used on the command line and in the checkpoint table: 'namespaces'. */
  name: string;
  /** Bump when the handlers change meaning: with the tables' definitions it makes the fingerprint. */
  version: number;
  /** The tables it owns (public schema); only its handlers write them. */
  tables: string[];
  /**
   * Projections whose tables reference each other by foreign key must be applied together, in
   * log order, by one owner: they share a group (conda-store's tables are one group).
   */
  group: string;
  handlers: Handlers;
  /**
   * The conflict targets of its upserts, per table (`{ worker: [['id']] }`). The runner refuses an
   * upsert on a key not listed here; rebuild-projections keeps these unique constraints during the
   * load (PostgreSQL needs them to arbitrate) and adds the other unique constraints after it.
   */
  upsertKeys?: Record<string, string[][]>;
}

/** `table(a,b)`: how an upsert key is compared, whatever the order of its columns. */
export const keySignature = (table: string, columns: string[]) => `${table}(${[...columns].sort().join(',')})`;

/** The upsert keys a group of projections declares, as key signatures. */
export function declaredUpsertKeys(projections: ProjectionDefinition[]): Set<string> {
  return new Set(projections.flatMap((p) => Object.entries(p.upsertKeys ?? {}).flatMap(([table, keys]) => keys.map((key) => keySignature(table, key)))));
}

export function defineProjection(definition: ProjectionDefinition): ProjectionDefinition {
  return definition;
}

/** The event types a projection handles. */
export function handledTypes(projection: ProjectionDefinition): EventType[] {
  return Object.keys(projection.handlers) as EventType[];
}

/** Runs the projection's handler for an event, or returns no change when it does not handle the type. */
export function changesFor(projection: ProjectionDefinition, event: ProjectedEvent): RowChange[] {
  const handler = projection.handlers[event.type] as Handler<EventType> | undefined;
  return handler ? handler(event) : [];
}

/** Projections by group, in the order their groups first appear: each group is applied, owned and rebuilt as one. */
export function groupsOf(projections: ProjectionDefinition[]): Map<string, ProjectionDefinition[]> {
  const groups = new Map<string, ProjectionDefinition[]>();
  for (const projection of projections) groups.set(projection.group, [...(groups.get(projection.group) ?? []), projection]);
  return groups;
}
