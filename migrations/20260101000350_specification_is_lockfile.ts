import type { Knex } from 'knex';

/**
 * specification.is_lockfile, as conda-store's alembic revision bf065abf375b ("lockfile spec")
 * added it. In conda-store the revision's data migration left every row `false`; here the column
 * is filled by `rebuild-projections` from the log (SpecificationRegistered.is_lockfile), with no
 * data migration written by hand. See the README, "Changing a projection's schema".
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE public.specification ADD COLUMN is_lockfile boolean NOT NULL DEFAULT false');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('ALTER TABLE public.specification DROP COLUMN is_lockfile');
}
