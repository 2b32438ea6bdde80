import { Id, IdList, Timestamp } from './common.js';
import { aggregate } from './define.js';

const solve = aggregate('solve', 'solve_id');

export const solveEvents = {
  SolveScheduled: solve.event('Inserts a solve row.', {
    solve_id: Id(),
    specification_id: Id(),
    scheduled_on: Timestamp(),
  }),
  SolveStarted: solve.event('Sets solve.started_on.', {
    solve_id: Id(),
    started_on: Timestamp(),
  }),
  SolveCompleted: solve.event("Sets solve.ended_on and inserts the solve's solve_conda_package_build rows.", {
    solve_id: Id(),
    ended_on: Timestamp(),
    conda_package_build_ids: IdList(),
  }),
};
