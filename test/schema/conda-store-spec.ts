/**
 * shared/spec/conda-store-tables.md as data: conda-store's 16 tables as the *migrated* database
 * (alembic head bf065abf375b) has them, in the shape test/helpers/introspect.ts reports.
 * test/tables.test.ts compares the database built by `knex migrate:latest` with this, table by table.
 *
 * Transcription rules (spec §0):
 *  - Integer -> 'integer'; BigInteger -> 'bigint'; Unicode(n) -> 'character varying' n;
 *    Unicode -> 'character varying' without length; Text/UnicodeText -> 'text'; JSON -> 'json'
 *    (not jsonb); DateTime -> 'timestamp without time zone'; Boolean -> 'boolean';
 *    the two enums -> 'character varying' 9 (build.status) and 21 (build_artifact.artifact_type).
 *  - Nullability is the spec's "Mig null" column.
 *  - Defaults: only the server defaults of the migrated database (build.build_key_version 1,
 *    specification.is_lockfile false) and the serial ids' nextval; Python-side defaults are not
 *    in the database.
 *  - Names the spec does not spell out are PostgreSQL's defaults, which is what SQLAlchemy/alembic
 *    get for unnamed constraints: `<table>_pkey`, `<table>_<col>_fkey`, `<table>_id_seq`.
 *    The solve association's primary key is therefore `solve_conda_package_build_pkey`.
 *  - Column order: the spec's row order, except build, whose migrated order is
 *    ...deleted_on, status_info, build_key_version, hash (columns added by later revisions).
 */
import type {
  ColumnDefinition,
  ConstraintDefinition,
  IndexDefinition,
  ReferentialAction,
  SequenceDefinition,
  TableDefinition,
} from '../helpers/introspect.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary

const NULL = true;
const NOT_NULL = false;

const INTEGER = 'integer';
const BIGINT = 'bigint';
const VARCHAR = 'character varying';
const TEXT = 'text';
const JSON_ = 'json';
const TIMESTAMP = 'timestamp without time zone';
const BOOLEAN = 'boolean';

/** A column: name, information_schema data_type, character_maximum_length, nullable, column_default. */
function col(name: string, dataType: string, maxLength: number | null, nullable: boolean, defaultValue: string | null = null): ColumnDefinition {
  return { name, dataType, maxLength, nullable, default: defaultValue };
}

/** A serial id: `integer NOT NULL DEFAULT nextval('<sequence>'::regclass)`. */
function serialId(sequence: string): ColumnDefinition {
  return col('id', INTEGER, null, NOT_NULL, `nextval('${sequence}'::regclass)`);
}

function pk(name: string, columns: string[]): ConstraintDefinition {
  return { name, type: 'PRIMARY KEY', columns, references: null, onDelete: null, onUpdate: null, deferrable: false, initiallyDeferred: false, check: null };
}

function unique(name: string, columns: string[]): ConstraintDefinition {
  return { name, type: 'UNIQUE', columns, references: null, onDelete: null, onUpdate: null, deferrable: false, initiallyDeferred: false, check: null };
}

/** A single-column foreign key to `<table>.id`; ON UPDATE is always NO ACTION. */
function fk(name: string, column: string, table: string, onDelete: ReferentialAction = 'NO ACTION'): ConstraintDefinition {
  return {
    name,
    type: 'FOREIGN KEY',
    columns: [column],
    references: { table, columns: ['id'] },
    onDelete,
    onUpdate: 'NO ACTION',
    deferrable: false,
    initiallyDeferred: false,
    check: null,
  };
}

/** A plain (non-unique, btree, non-partial) index. */
function index(name: string, columns: string[]): IndexDefinition {
  return { name, columns, unique: false, primary: false, method: 'btree', predicate: null };
}

/** The sequence a `serial` column creates: integer, 1..2^31-1, step 1, cache 1, no cycle, OWNED BY the column. */
function serialSequence(name: string, ownedBy: string): SequenceDefinition {
  return {
    name,
    ownedBy,
    ownership: 'serial',
    dataType: 'integer',
    start: '1',
    increment: '1',
    minValue: '1',
    maxValue: '2147483647',
    cache: '1',
    cycle: false,
  };
}

function byName<T extends { name: string }>(a: T, b: T): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A table. PostgreSQL backs every PRIMARY KEY and UNIQUE constraint with a unique btree index of
 * the same name and columns; those indexes are added here, so `indexes` lists only the
 * free-standing ones.
 */
function table(definition: {
  columns: ColumnDefinition[];
  constraints: ConstraintDefinition[];
  indexes?: IndexDefinition[];
  sequences?: SequenceDefinition[];
}): TableDefinition {
  const backing = definition.constraints
    .filter((c) => c.type === 'PRIMARY KEY' || c.type === 'UNIQUE')
    .map((c): IndexDefinition => ({
      name: c.name,
      columns: c.columns,
      unique: true,
      primary: c.type === 'PRIMARY KEY',
      method: 'btree',
      predicate: null,
    }));
  return {
    columns: definition.columns,
    constraints: [...definition.constraints].sort(byName),
    indexes: [...backing, ...(definition.indexes ?? [])].sort(byName),
    sequences: [...(definition.sequences ?? [])].sort(byName),
  };
}

// ---------------------------------------------------------------------------------------------
// The 16 tables, in the spec's order

export const condaStoreTables: Record<string, TableDefinition> = {
  namespace: table({
    columns: [
      serialId('namespace_id_seq'),
      col('name', VARCHAR, 255, NULL),
      col('deleted_on', TIMESTAMP, null, NULL),
      col('metadata_', JSON_, null, NULL),
    ],
    constraints: [pk('namespace_pkey', ['id']), unique('namespace_name_key', ['name'])],
    sequences: [serialSequence('namespace_id_seq', 'namespace.id')],
  }),

  namespace_role_mapping: table({
    columns: [
      serialId('namespace_role_mapping_id_seq'),
      col('namespace_id', INTEGER, null, NOT_NULL),
      col('entity', VARCHAR, 255, NOT_NULL),
      col('role', VARCHAR, 255, NOT_NULL),
    ],
    constraints: [
      pk('namespace_role_mapping_pkey', ['id']),
      fk('namespace_role_mapping_namespace_id_fkey', 'namespace_id', 'namespace'),
    ],
    sequences: [serialSequence('namespace_role_mapping_id_seq', 'namespace_role_mapping.id')],
  }),

  namespace_role_mapping_v2: table({
    columns: [
      serialId('namespace_role_mapping_v2_id_seq'),
      col('namespace_id', INTEGER, null, NOT_NULL),
      col('other_namespace_id', INTEGER, null, NOT_NULL),
      col('role', VARCHAR, 255, NOT_NULL),
    ],
    constraints: [
      pk('namespace_role_mapping_v2_pkey', ['id']),
      fk('namespace_role_mapping_v2_namespace_id_fkey', 'namespace_id', 'namespace'),
      fk('namespace_role_mapping_v2_other_namespace_id_fkey', 'other_namespace_id', 'namespace'),
      // Literally `_uc` (alembic revision 771180018e1b names it so).
      unique('_uc', ['namespace_id', 'other_namespace_id']),
    ],
    sequences: [serialSequence('namespace_role_mapping_v2_id_seq', 'namespace_role_mapping_v2.id')],
  }),

  specification: table({
    columns: [
      serialId('specification_id_seq'),
      col('name', VARCHAR, 255, NOT_NULL),
      col('spec', JSON_, null, NOT_NULL),
      col('sha256', VARCHAR, 255, NOT_NULL),
      col('created_on', TIMESTAMP, null, NULL),
      col('is_lockfile', BOOLEAN, null, NOT_NULL, 'false'),
    ],
    constraints: [pk('specification_pkey', ['id']), unique('specification_sha256_key', ['sha256'])],
    sequences: [serialSequence('specification_id_seq', 'specification.id')],
  }),

  environment: table({
    columns: [
      serialId('environment_id_seq'),
      col('namespace_id', INTEGER, null, NOT_NULL),
      col('name', VARCHAR, 255, NOT_NULL),
      col('current_build_id', INTEGER, null, NULL),
      col('deleted_on', TIMESTAMP, null, NULL),
      col('description', TEXT, null, NULL),
    ],
    constraints: [
      pk('environment_pkey', ['id']),
      fk('environment_namespace_id_fkey', 'namespace_id', 'namespace'),
      fk('environment_current_build_id_fkey', 'current_build_id', 'build'),
      unique('_namespace_name_uc', ['namespace_id', 'name']),
    ],
    sequences: [serialSequence('environment_id_seq', 'environment.id')],
  }),

  build: table({
    columns: [
      serialId('build_id_seq'),
      col('specification_id', INTEGER, null, NOT_NULL),
      col('environment_id', INTEGER, null, NOT_NULL),
      col('status', VARCHAR, 9, NULL),
      col('size', BIGINT, null, NULL),
      col('scheduled_on', TIMESTAMP, null, NULL),
      col('started_on', TIMESTAMP, null, NULL),
      col('ended_on', TIMESTAMP, null, NULL),
      col('deleted_on', TIMESTAMP, null, NULL),
      col('status_info', TEXT, null, NULL),
      col('build_key_version', INTEGER, null, NOT_NULL, '1'),
      col('hash', VARCHAR, 32, NULL),
    ],
    constraints: [
      pk('build_pkey', ['id']),
      fk('build_specification_id_fkey', 'specification_id', 'specification'),
      fk('build_environment_id_fkey', 'environment_id', 'environment'),
    ],
    sequences: [serialSequence('build_id_seq', 'build.id')],
  }),

  build_artifact: table({
    columns: [
      serialId('build_artifact_id_seq'),
      col('build_id', INTEGER, null, NULL),
      col('artifact_type', VARCHAR, 21, NOT_NULL),
      col('key', VARCHAR, 255, NULL),
    ],
    constraints: [pk('build_artifact_pkey', ['id']), fk('build_artifact_build_id_fkey', 'build_id', 'build')],
    sequences: [serialSequence('build_artifact_id_seq', 'build_artifact.id')],
  }),

  build_conda_package_build: table({
    columns: [col('build_id', INTEGER, null, NOT_NULL), col('conda_package_build_id', INTEGER, null, NOT_NULL)],
    constraints: [
      pk('build_conda_package_build_pkey', ['build_id', 'conda_package_build_id']),
      fk('build_conda_package_build_build_id_fkey', 'build_id', 'build', 'CASCADE'),
      fk('build_conda_package_build_conda_package_build_id_fkey', 'conda_package_build_id', 'conda_package_build', 'CASCADE'),
    ],
  }),

  solve: table({
    columns: [
      serialId('solve_id_seq'),
      col('specification_id', INTEGER, null, NOT_NULL),
      col('scheduled_on', TIMESTAMP, null, NULL),
      col('started_on', TIMESTAMP, null, NULL),
      col('ended_on', TIMESTAMP, null, NULL),
    ],
    constraints: [pk('solve_pkey', ['id']), fk('solve_specification_id_fkey', 'specification_id', 'specification')],
    sequences: [serialSequence('solve_id_seq', 'solve.id')],
  }),

  solve_conda_package_build: table({
    columns: [col('solve_id', INTEGER, null, NOT_NULL), col('conda_package_build_id', INTEGER, null, NOT_NULL)],
    constraints: [
      // Unnamed in the spec; PostgreSQL's default name for alembic's unnamed PrimaryKeyConstraint.
      pk('solve_conda_package_build_pkey', ['solve_id', 'conda_package_build_id']),
      fk('solve_conda_package_build_solve_id_fkey', 'solve_id', 'solve', 'CASCADE'),
      fk('solve_conda_package_build_conda_package_build_id_fkey', 'conda_package_build_id', 'conda_package_build', 'CASCADE'),
    ],
  }),

  conda_channel: table({
    columns: [
      serialId('conda_channel_id_seq'),
      col('name', VARCHAR, 255, NOT_NULL),
      col('last_update', TIMESTAMP, null, NULL),
    ],
    constraints: [pk('conda_channel_pkey', ['id']), unique('conda_channel_name_key', ['name'])],
    sequences: [serialSequence('conda_channel_id_seq', 'conda_channel.id')],
  }),

  conda_package: table({
    columns: [
      serialId('conda_package_tmp_id_seq'),
      col('channel_id', INTEGER, null, NULL),
      col('license', TEXT, null, NULL),
      col('license_family', VARCHAR, 64, NULL),
      col('name', VARCHAR, 255, NOT_NULL),
      col('version', VARCHAR, 64, NOT_NULL),
      col('summary', TEXT, null, NULL),
      col('description', TEXT, null, NULL),
    ],
    constraints: [
      pk('conda_package_tmp_pkey', ['id']),
      fk('conda_package_channel_id_fkey', 'channel_id', 'conda_channel'),
      unique('_conda_package_uc', ['channel_id', 'name', 'version']),
    ],
    indexes: [
      index('ix_conda_package_channel_id', ['channel_id']),
      index('ix_conda_package_name', ['name']),
      index('ix_conda_package_version', ['version']),
    ],
    sequences: [serialSequence('conda_package_tmp_id_seq', 'conda_package.id')],
  }),

  conda_package_build: table({
    columns: [
      serialId('conda_package_build_id_seq'),
      col('package_id', INTEGER, null, NULL),
      col('channel_id', INTEGER, null, NULL),
      col('build', VARCHAR, 64, NOT_NULL),
      col('build_number', INTEGER, null, NOT_NULL),
      col('constrains', JSON_, null, NULL),
      col('depends', JSON_, null, NOT_NULL),
      col('md5', VARCHAR, 255, NOT_NULL),
      col('sha256', VARCHAR, 64, NOT_NULL),
      col('size', BIGINT, null, NOT_NULL),
      col('subdir', VARCHAR, 64, NULL),
      col('timestamp', BIGINT, null, NULL),
    ],
    constraints: [
      pk('conda_package_build_pkey', ['id']),
      fk('conda_package_build_package_id_fkey', 'package_id', 'conda_package'),
      fk('conda_package_build_channel_id_fkey', 'channel_id', 'conda_channel'),
      unique('_conda_package_build_uc', ['channel_id', 'package_id', 'subdir', 'build', 'build_number', 'sha256']),
    ],
    indexes: [index('ix_conda_package_build_build', ['build'])],
    sequences: [serialSequence('conda_package_build_id_seq', 'conda_package_build.id')],
  }),

  conda_store_configuration: table({
    columns: [
      serialId('conda_store_configuration_id_seq'),
      col('disk_usage', BIGINT, null, NULL),
      col('free_storage', BIGINT, null, NULL),
      col('total_storage', BIGINT, null, NULL),
    ],
    constraints: [pk('conda_store_configuration_pkey', ['id'])],
    sequences: [serialSequence('conda_store_configuration_id_seq', 'conda_store_configuration.id')],
  }),

  keyvaluestore: table({
    columns: [
      serialId('keyvaluestore_id_seq'),
      col('prefix', VARCHAR, null, NOT_NULL),
      col('key', VARCHAR, null, NOT_NULL),
      col('value', JSON_, null, NULL),
    ],
    // No unique (prefix, key): the ORM's _prefix_key_uc is absent from the migrated database (spec §0).
    constraints: [pk('keyvaluestore_pkey', ['id'])],
    indexes: [index('ix_keyvaluestore_prefix', ['prefix'])],
    sequences: [serialSequence('keyvaluestore_id_seq', 'keyvaluestore.id')],
  }),

  worker: table({
    columns: [serialId('worker_id_seq'), col('initialized', BOOLEAN, null, NULL)],
    constraints: [pk('worker_pkey', ['id'])],
    sequences: [serialSequence('worker_id_seq', 'worker.id')],
  }),
};

/** The table names, sorted. */
export const condaStoreTableNames: string[] = Object.keys(condaStoreTables).sort();

/** Every sequence of the schema (all owned by an `id` column), sorted by name. */
export const condaStoreSequences: SequenceDefinition[] = Object.values(condaStoreTables)
  .flatMap((definition) => definition.sequences)
  .sort(byName);
