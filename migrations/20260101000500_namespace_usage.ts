import type { Knex } from 'knex';

/**
 * The namespace_usage read model (projections/namespace-usage.ts). Created empty: after
 * `knex migrate:latest`, `rebuild-projections` (its fingerprint is new) fills it from the whole
 * log, including events from before the table existed.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE public.namespace_usage (
      namespace_id     integer NOT NULL,
      builds           integer NOT NULL,
      completed_builds integer NOT NULL,
      total_size       bigint  NOT NULL,
      CONSTRAINT namespace_usage_pkey PRIMARY KEY (namespace_id)
    );
    CREATE TABLE public.namespace_usage_environment (
      environment_id integer NOT NULL,
      namespace_id   integer NOT NULL,
      CONSTRAINT namespace_usage_environment_pkey PRIMARY KEY (environment_id)
    );
    CREATE TABLE public.namespace_usage_build (
      build_id     integer NOT NULL,
      namespace_id integer NOT NULL,
      completed    boolean NOT NULL,
      size         bigint  NOT NULL,
      CONSTRAINT namespace_usage_build_pkey PRIMARY KEY (build_id)
    );
  `);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP TABLE public.namespace_usage_build, public.namespace_usage_environment, public.namespace_usage');
}
