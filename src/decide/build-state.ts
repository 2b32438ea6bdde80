/**
 * The state of a build as the append-time rules need it, folded from its stream: its status
 * (QUEUED → BUILDING → COMPLETED | FAILED | CANCELED) and whether it is deleted.
 */
import type { BuildStatus } from '../catalogue/index.js';

export interface BuildState {
  status: BuildStatus | undefined;
  deleted: boolean;
}

export const initialBuildState: BuildState = { status: undefined, deleted: false };

const statusAfter: Partial<Record<string, BuildStatus>> = {
  BuildScheduled: 'QUEUED',
  BuildStarted: 'BUILDING',
  BuildCompleted: 'COMPLETED',
  BuildFailed: 'FAILED',
  BuildCanceled: 'CANCELED',
};

/** The statuses an event may follow; absent: any status. */
export const allowedFrom: Partial<Record<string, readonly BuildStatus[]>> = {
  BuildStarted: ['QUEUED'],
  BuildCompleted: ['BUILDING'],
  BuildFailed: ['BUILDING'],
  BuildCanceled: ['QUEUED', 'BUILDING'],
  BuildDeleted: ['COMPLETED', 'FAILED'],
};

export function evolveBuild(state: BuildState, eventType: string): BuildState {
  const status = statusAfter[eventType];
  if (status) return { ...state, status };
  if (eventType === 'BuildDeleted') return { ...state, deleted: true };
  return state;
}
