/** Aggregate kinds: the prefix of a stream name (`build-42` is a stream of kind `build`). */
export const AGGREGATE_KINDS = [
  'namespace',
  'environment',
  'specification',
  'build',
  'conda_channel',
  'conda_package',
  'solve',
  'conda_store_configuration',
  'keyvaluestore',
  'worker',
] as const;
export type AggregateKind = (typeof AGGREGATE_KINDS)[number];

/**
 * The kinds the store's id allocator hands out ids for (`allocateIds(kind, n)`): one sequence per
 * table whose `id` a producer must know before appending. Row tables inside an aggregate
 * (role mappings, build artifacts, package builds) have their own sequence, so they are listed too.
 */
export const ID_KINDS = [
  'namespace',
  'namespace_role_mapping',
  'namespace_role_mapping_v2',
  'environment',
  'specification',
  'build',
  'build_artifact',
  'solve',
  'conda_channel',
  'conda_package',
  'conda_package_build',
  'keyvaluestore',
  'worker',
] as const;
export type IdKind = (typeof ID_KINDS)[number];

export function isIdKind(x: string): x is IdKind {
  return (ID_KINDS as readonly string[]).includes(x);
}
