/**
 * Runs projections for a process: groups them (projections that share foreign keys are applied
 * together), takes ownership of each group, and catches up or stays live.
 */
import { createPool } from '../db/pool.js';
import type { EventLog } from '../log/types.js';
import type { Upcast } from '../catalogue/index.js';
import type { Logger } from '../logger.js';
import { groupsOf, type ProjectionDefinition } from './definition.js';
import { acquireOwnership, tryOwningAll, waitFor } from './ownership.js';
import { catchUpTogether, createRunner } from './runner.js';
import { isTransient } from './transient.js';
import { sleep } from '../sleep.js';

export interface ProjectionServiceOptions {
  databaseUrl: string;
  log: EventLog;
  logger: Logger;
  projections: ProjectionDefinition[];
  batchSize?: number;
  /** See RunnerOptions.setBasedKeyChecksFrom. */
  setBasedKeyChecksFrom?: number;
  onBatch?: (progress: { group: string; position: number; events: number }) => void;
  /** See RunnerOptions.failedRecheckMs. */
  failedRecheckMs?: number;
  /** See RunnerOptions.upcast. */
  upcast?: Upcast;
}

export function createProjectionService(options: ProjectionServiceOptions) {
  const pool = createPool({ connectionString: options.databaseUrl, max: 4, onError: (error) => options.logger.warn({ err: error }, 'projection pool: connection lost') });
  const groups = groupsOf(options.projections);

  const runnerFor = (group: string, projections: ProjectionDefinition[]) =>
    createRunner({
      log: options.log,
      pool,
      projections,
      logger: options.logger.child({ group }),
      batchSize: options.batchSize,
      setBasedKeyChecksFrom: options.setBasedKeyChecksFrom,
      failedRecheckMs: options.failedRecheckMs,
      upcast: options.upcast,
      onBatch: (progress) => options.onBatch?.({ group, ...progress }),
    });

  return {
    /**
     * Applies every pending event to every projection, then returns; the log is read once for all
     * groups. Waits while another process owns any of the groups, holding none of them meanwhile
     * (tryOwningAll): a serve that owns one of them then owns the others as soon as it asks.
     */
    async catchUp(signal?: AbortSignal): Promise<void> {
      const owned = await waitFor(() => tryOwningAll(options.databaseUrl, [...groups.keys()].sort()), {
        signal,
        onWaiting: () => options.logger.info({ groups: [...groups.keys()] }, 'another process owns a projection group; waiting for all of them to be free'),
      });
      if (!owned) return;
      try {
        const runners = [...groups].map(([group, projections]) => runnerFor(group, projections));
        // Stops, as serve does, when a group's lock connection is lost: another process may own
        // it by now (nothing would be applied twice, the checkpoints see to that, but one owner
        // at a time is the rule).
        const lost = owned.map((ownership) => ownership.lost);
        await catchUpTogether(options.log, runners, {
          batchSize: options.batchSize,
          signal: AbortSignal.any([...(signal ? [signal] : []), ...lost]),
          onBatch: (progress) => options.onBatch?.({ group: 'all', ...progress }),
        });
        if (lost.some((s) => s.aborted) && !signal?.aborted) {
          throw new Error('catch-up stopped: the connection holding a projection group\'s lock was lost (another process may own the group now); run it again');
        }
      } finally {
        for (const ownership of owned) await ownership.release();
      }
    },

    /**
     * Keeps every group current until `stopped` aborts; takes over a group when its owner dies. A
     * group that fails stops the others, and its error comes out once they have finished their
     * batch: the caller closes the pool after, which used to end it under their last batch.
     */
    async serve(stopped: AbortSignal): Promise<void> {
      const failed = new AbortController();
      const signal = AbortSignal.any([stopped, failed.signal]);
      const serveGroup = async (group: string, projections: ProjectionDefinition[]): Promise<void> => {
        const logger = options.logger.child({ group });
        // One runner for the whole run: a failed projection is tried again at a restart (after a
        // fix), not each time the group is taken over after an outage.
        const runner = runnerFor(group, projections);
        let failures = 0;
        while (!signal.aborted) {
          const ownership = await acquireOwnership(options.databaseUrl, group, {
            signal,
            onWaiting: () => logger.info('another process owns this projection group; waiting to take over'),
          }).catch((error) => {
            if (!isTransient(error)) throw error;
            return null;
          });
          if (ownership === undefined) return; // aborted
          if (ownership === null) {
            await sleep(Math.min(1000 * 2 ** failures++, 10_000), signal);
            continue;
          }
          logger.info('owning projection group');
          const stop = AbortSignal.any([signal, ownership.lost]);
          try {
            await runner.runLive(stop);
            failures = 0;
          } catch (error) {
            if (!isTransient(error)) throw error;
            logger.warn({ err: error }, 'database unavailable; resuming when it is back');
            await sleep(Math.min(1000 * 2 ** failures++, 10_000), signal);
          } finally {
            await ownership.release();
          }
        }
      };
      const results = await Promise.allSettled(
        [...groups].map(([group, projections]) =>
          serveGroup(group, projections).catch((error: unknown) => {
            failed.abort();
            throw error;
          }),
        ),
      );
      const failure = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
      if (failure) throw failure.reason;
    },

    close: () => pool.end(),
  };
}
