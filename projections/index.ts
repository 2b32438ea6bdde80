/**
 * conda-store's sixteen tables as seven projections of the log, one per aggregate. They share
 * the group 'conda-store': the runner applies them together, in log order, in one transaction
 * per batch, and for each event in the order of this list, which follows the foreign keys
 * (a namespace before its environments, a specification and an environment before their builds,
 * package builds before the builds and solves that link to them). Within one event that order
 * also matters: on BuildPurged, `environments` clears current_build_id before `builds` deletes
 * the row; on NamespaceDeleted, `builds` finds the builds through environment rows that exist.
 */
import type { ProjectionDefinition } from '../src/projection/definition.js';
import { builds } from './builds.js';
import { channels } from './channels.js';
import { environments } from './environments.js';
import { namespaceUsage } from './namespace-usage.js';
import { namespaces } from './namespaces.js';
import { serverState } from './server-state.js';
import { solves } from './solves.js';
import { specifications } from './specifications.js';

export { builds, channels, environments, namespaces, namespaceUsage, serverState, solves, specifications };

export const condaStoreProjections: ProjectionDefinition[] = [
  namespaces,
  specifications,
  channels,
  environments,
  builds,
  solves,
  serverState,
];

/** Every projection the commands run: conda-store's tables, then read models of this project's own. */
export const allProjections: ProjectionDefinition[] = [...condaStoreProjections, namespaceUsage];

/** The projections by name, as the command line names them ('namespaces', 'server-state', ...). */
export const projectionsByName: Readonly<Record<string, ProjectionDefinition>> = Object.freeze(
  Object.fromEntries(allProjections.map((projection) => [projection.name, projection])),
);
