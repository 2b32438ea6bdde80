/** solve and solve_conda_package_build, from the solve stream. */
import { defineProjection } from '../src/projection/definition.js';

export const solves = defineProjection({
  name: 'solves',
  version: 1,
  group: 'conda-store',
  upsertKeys: { solve_conda_package_build: [['solve_id', 'conda_package_build_id']] },
  tables: ['solve', 'solve_conda_package_build'],
  handlers: {
    SolveScheduled: ({ data }) => [
      {
        op: 'insert',
        table: 'solve',
        row: { id: data.solve_id, specification_id: data.specification_id, scheduled_on: data.scheduled_on, started_on: null, ended_on: null },
      },
    ],

    SolveStarted: ({ data }) => [
      { op: 'update', table: 'solve', where: { id: data.solve_id }, set: { started_on: data.started_on } },
    ],

    // The links: `update: []` is ON CONFLICT DO NOTHING (the runner turns an empty update list
    // into DO NOTHING).
    SolveCompleted: ({ data }) => [
      { op: 'update', table: 'solve', where: { id: data.solve_id }, set: { ended_on: data.ended_on } },
      ...data.conda_package_build_ids.map((id) => ({
        op: 'upsert' as const,
        table: 'solve_conda_package_build',
        row: { solve_id: data.solve_id, conda_package_build_id: id },
        key: ['solve_id', 'conda_package_build_id'],
        update: [],
      })),
    ],
  },
});
