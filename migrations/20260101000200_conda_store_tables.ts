import type { Knex } from 'knex';

/**
 * conda-store's 16 tables, exactly as a conda-store database migrated by alembic to head
 * `bf065abf375b` has them (shared/spec/conda-store-tables.md, "the migrated database"):
 * migrated nullability, `varchar` instead of enum types, the two server defaults
 * (`build.build_key_version DEFAULT 1`, `specification.is_lockfile DEFAULT false`), serial
 * integer ids with owned `<table>_id_seq` sequences, and alembic's constraint and index names,
 * including conda_package's `conda_package_tmp_*` leftovers.
 *
 * Raw SQL, one block per table, because every name and type must be exact.
 * test/schema/conda-store-spec.ts states the same schema as data; test/tables.test.ts compares
 * the two by introspection.
 *
 * Names the spec leaves implicit follow what SQLAlchemy/alembic produce on PostgreSQL, i.e.
 * PostgreSQL's own defaults for unnamed constraints:
 *  - every primary key is `<table>_pkey`, including the composite ones of the two association
 *    tables (`build_conda_package_build_pkey`, `solve_conda_package_build_pkey`); the one
 *    exception is conda_package, created as `conda_package_tmp` and later renamed;
 *  - every foreign key is `<table>_<column>_fkey`;
 *  - `Column(unique=True)` gives `<table>_<column>_key` (`namespace_name_key`,
 *    `specification_sha256_key`, `conda_channel_name_key`);
 *  - the unique constraint of namespace_role_mapping_v2 is literally named `_uc`
 *    (`UniqueConstraint(..., name="_uc")` in revision 771180018e1b).
 * Column order is the order in which alembic added the columns (build: status_info came in
 * d78e9889566a, build_key_version in 30b37e725c32, hash in e17b4cc6e086).
 */

const TABLES = [
  // In an order that satisfies the foreign keys, for readers; `down` drops them in one statement.
  'namespace',
  'namespace_role_mapping',
  'namespace_role_mapping_v2',
  'specification',
  'environment',
  'build',
  'build_artifact',
  'solve',
  'conda_channel',
  'conda_package',
  'conda_package_build',
  'build_conda_package_build',
  'solve_conda_package_build',
  'conda_store_configuration',
  'keyvaluestore',
  'worker',
] as const;

export async function up(knex: Knex): Promise<void> {
  await knex.raw(`
    CREATE TABLE public.namespace (
      id         serial NOT NULL,
      name       varchar(255),
      deleted_on timestamp without time zone,
      metadata_  json,
      CONSTRAINT namespace_pkey PRIMARY KEY (id),
      CONSTRAINT namespace_name_key UNIQUE (name)
    )`);

  await knex.raw(`
    CREATE TABLE public.namespace_role_mapping (
      id           serial NOT NULL,
      namespace_id integer NOT NULL,
      entity       varchar(255) NOT NULL,
      role         varchar(255) NOT NULL,
      CONSTRAINT namespace_role_mapping_pkey PRIMARY KEY (id),
      CONSTRAINT namespace_role_mapping_namespace_id_fkey
        FOREIGN KEY (namespace_id) REFERENCES public.namespace (id)
    )`);

  await knex.raw(`
    CREATE TABLE public.namespace_role_mapping_v2 (
      id                 serial NOT NULL,
      namespace_id       integer NOT NULL,
      other_namespace_id integer NOT NULL,
      role               varchar(255) NOT NULL,
      CONSTRAINT namespace_role_mapping_v2_pkey PRIMARY KEY (id),
      CONSTRAINT namespace_role_mapping_v2_namespace_id_fkey
        FOREIGN KEY (namespace_id) REFERENCES public.namespace (id),
      CONSTRAINT namespace_role_mapping_v2_other_namespace_id_fkey
        FOREIGN KEY (other_namespace_id) REFERENCES public.namespace (id),
      -- The name alembic revision 771180018e1b gives it, verbatim.
      CONSTRAINT _uc UNIQUE (namespace_id, other_namespace_id)
    )`);

  await knex.raw(`
    CREATE TABLE public.specification (
      id          serial NOT NULL,
      name        varchar(255) NOT NULL,
      spec        json NOT NULL,
      sha256      varchar(255) NOT NULL,
      created_on  timestamp without time zone,
      -- is_lockfile comes with its own migration (20260101000350), as in conda-store (bf065abf375b).
      CONSTRAINT specification_pkey PRIMARY KEY (id),
      CONSTRAINT specification_sha256_key UNIQUE (sha256)
    )`);

  // environment.current_build_id -> build.id is added once build exists (the FK cycle).
  await knex.raw(`
    CREATE TABLE public.environment (
      id               serial NOT NULL,
      namespace_id     integer NOT NULL,
      name             varchar(255) NOT NULL,
      current_build_id integer,
      deleted_on       timestamp without time zone,
      description      text,
      CONSTRAINT environment_pkey PRIMARY KEY (id),
      CONSTRAINT _namespace_name_uc UNIQUE (namespace_id, name),
      CONSTRAINT environment_namespace_id_fkey
        FOREIGN KEY (namespace_id) REFERENCES public.namespace (id)
    )`);

  // status holds a BuildStatus name (QUEUED, BUILDING, COMPLETED, FAILED, CANCELED): varchar(9), no enum type.
  await knex.raw(`
    CREATE TABLE public.build (
      id                serial NOT NULL,
      specification_id  integer NOT NULL,
      environment_id    integer NOT NULL,
      status            varchar(9),
      size              bigint,
      scheduled_on      timestamp without time zone,
      started_on        timestamp without time zone,
      ended_on          timestamp without time zone,
      deleted_on        timestamp without time zone,
      status_info       text,
      build_key_version integer NOT NULL DEFAULT 1,
      hash              varchar(32),
      CONSTRAINT build_pkey PRIMARY KEY (id),
      CONSTRAINT build_specification_id_fkey
        FOREIGN KEY (specification_id) REFERENCES public.specification (id),
      CONSTRAINT build_environment_id_fkey
        FOREIGN KEY (environment_id) REFERENCES public.environment (id)
    )`);

  await knex.raw(`
    ALTER TABLE public.environment
      ADD CONSTRAINT environment_current_build_id_fkey
        FOREIGN KEY (current_build_id) REFERENCES public.build (id)`);

  // artifact_type holds a BuildArtifactType name (longest: CONSTRUCTOR_INSTALLER): varchar(21), no enum type.
  await knex.raw(`
    CREATE TABLE public.build_artifact (
      id            serial NOT NULL,
      build_id      integer,
      artifact_type varchar(21) NOT NULL,
      key           varchar(255),
      CONSTRAINT build_artifact_pkey PRIMARY KEY (id),
      CONSTRAINT build_artifact_build_id_fkey
        FOREIGN KEY (build_id) REFERENCES public.build (id)
    )`);

  await knex.raw(`
    CREATE TABLE public.solve (
      id               serial NOT NULL,
      specification_id integer NOT NULL,
      scheduled_on     timestamp without time zone,
      started_on       timestamp without time zone,
      ended_on         timestamp without time zone,
      CONSTRAINT solve_pkey PRIMARY KEY (id),
      CONSTRAINT solve_specification_id_fkey
        FOREIGN KEY (specification_id) REFERENCES public.specification (id)
    )`);

  await knex.raw(`
    CREATE TABLE public.conda_channel (
      id          serial NOT NULL,
      name        varchar(255) NOT NULL,
      last_update timestamp without time zone,
      CONSTRAINT conda_channel_pkey PRIMARY KEY (id),
      CONSTRAINT conda_channel_name_key UNIQUE (name)
    )`);

  // In conda-store this table was created as conda_package_tmp and renamed (revision
  // 16f65805dc8f); its primary key and sequence kept the old names. The serial's sequence is
  // renamed here; the column default refers to it by OID, so it follows.
  await knex.raw(`
    CREATE TABLE public.conda_package (
      id             serial NOT NULL,
      channel_id     integer,
      license        text,
      license_family varchar(64),
      name           varchar(255) NOT NULL,
      version        varchar(64) NOT NULL,
      summary        text,
      description    text,
      CONSTRAINT conda_package_tmp_pkey PRIMARY KEY (id),
      CONSTRAINT _conda_package_uc UNIQUE (channel_id, name, version),
      CONSTRAINT conda_package_channel_id_fkey
        FOREIGN KEY (channel_id) REFERENCES public.conda_channel (id)
    );
    ALTER SEQUENCE public.conda_package_id_seq RENAME TO conda_package_tmp_id_seq;
    CREATE INDEX ix_conda_package_channel_id ON public.conda_package (channel_id);
    CREATE INDEX ix_conda_package_name ON public.conda_package (name);
    CREATE INDEX ix_conda_package_version ON public.conda_package (version)`);

  await knex.raw(`
    CREATE TABLE public.conda_package_build (
      id           serial NOT NULL,
      package_id   integer,
      channel_id   integer,
      build        varchar(64) NOT NULL,
      build_number integer NOT NULL,
      constrains   json,
      depends      json NOT NULL,
      md5          varchar(255) NOT NULL,
      sha256       varchar(64) NOT NULL,
      size         bigint NOT NULL,
      subdir       varchar(64),
      timestamp    bigint,
      CONSTRAINT conda_package_build_pkey PRIMARY KEY (id),
      CONSTRAINT _conda_package_build_uc
        UNIQUE (channel_id, package_id, subdir, build, build_number, sha256),
      CONSTRAINT conda_package_build_package_id_fkey
        FOREIGN KEY (package_id) REFERENCES public.conda_package (id),
      CONSTRAINT conda_package_build_channel_id_fkey
        FOREIGN KEY (channel_id) REFERENCES public.conda_channel (id)
    );
    CREATE INDEX ix_conda_package_build_build ON public.conda_package_build (build)`);

  // The two association tables: the only foreign keys with ON DELETE CASCADE.
  await knex.raw(`
    CREATE TABLE public.build_conda_package_build (
      build_id               integer NOT NULL,
      conda_package_build_id integer NOT NULL,
      CONSTRAINT build_conda_package_build_pkey PRIMARY KEY (build_id, conda_package_build_id),
      CONSTRAINT build_conda_package_build_build_id_fkey
        FOREIGN KEY (build_id) REFERENCES public.build (id) ON DELETE CASCADE,
      CONSTRAINT build_conda_package_build_conda_package_build_id_fkey
        FOREIGN KEY (conda_package_build_id) REFERENCES public.conda_package_build (id) ON DELETE CASCADE
    )`);

  await knex.raw(`
    CREATE TABLE public.solve_conda_package_build (
      solve_id               integer NOT NULL,
      conda_package_build_id integer NOT NULL,
      CONSTRAINT solve_conda_package_build_pkey PRIMARY KEY (solve_id, conda_package_build_id),
      CONSTRAINT solve_conda_package_build_solve_id_fkey
        FOREIGN KEY (solve_id) REFERENCES public.solve (id) ON DELETE CASCADE,
      CONSTRAINT solve_conda_package_build_conda_package_build_id_fkey
        FOREIGN KEY (conda_package_build_id) REFERENCES public.conda_package_build (id) ON DELETE CASCADE
    )`);

  await knex.raw(`
    CREATE TABLE public.conda_store_configuration (
      id            serial NOT NULL,
      disk_usage    bigint,
      free_storage  bigint,
      total_storage bigint,
      CONSTRAINT conda_store_configuration_pkey PRIMARY KEY (id)
    )`);

  // No unique (prefix, key): the migrated database does not have the ORM's _prefix_key_uc (spec §0).
  await knex.raw(`
    CREATE TABLE public.keyvaluestore (
      id     serial NOT NULL,
      prefix varchar NOT NULL,
      key    varchar NOT NULL,
      value  json,
      CONSTRAINT keyvaluestore_pkey PRIMARY KEY (id)
    );
    CREATE INDEX ix_keyvaluestore_prefix ON public.keyvaluestore (prefix)`);

  await knex.raw(`
    CREATE TABLE public.worker (
      id          serial NOT NULL,
      initialized boolean,
      CONSTRAINT worker_pkey PRIMARY KEY (id)
    )`);
}

export async function down(knex: Knex): Promise<void> {
  // One statement drops all of them despite the environment <-> build cycle; their owned
  // sequences and indexes go with them. No CASCADE: anything else depending on these tables
  // must have been removed by its own (later) migration's `down`.
  await knex.raw(`DROP TABLE ${TABLES.map((table) => `public.${table}`).join(', ')}`);
}
