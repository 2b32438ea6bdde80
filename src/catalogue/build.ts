import {
  ARTIFACT_TYPES,
  BigCount,
  BUILD_KEY_VERSIONS,
  BuildHash,
  Id,
  IdList,
  OneOf,
  Optional,
  Text,
  Timestamp,
  Varchar,
} from './common.js';
import { aggregate } from './define.js';

const build = aggregate('build', 'build_id');

/** The three ways a build ends carry the same fields. */
const ending = () => ({ build_id: Id(), ended_on: Timestamp(), status_info: Optional(Text({ description: 'reason shown to the user' })) });

export const buildEvents = {
  BuildScheduled: build.event('Inserts a build row with status QUEUED.', {
    build_id: Id(),
    environment_id: Id(),
    specification_id: Id(),
    scheduled_on: Timestamp(),
    build_key_version: OneOf(BUILD_KEY_VERSIONS),
    hash: Optional(BuildHash({ description: 'the cached build key; build_key_version 3 only' })),
  }, {
    // data-rules.ts: a hash exactly when build_key_version is 3.
    if: { type: 'object', properties: { build_key_version: { const: 3 } }, required: ['build_key_version'] },
    then: { type: 'object', properties: { hash: { type: 'string' } }, required: ['hash'] },
    else: { type: 'object', properties: { hash: { type: 'null' } } },
  }),
  BuildStarted: build.event('Sets status BUILDING and started_on.', {
    build_id: Id(),
    started_on: Timestamp(),
  }),
  BuildStatusInfoUpdated: build.event('Updates build.status_info.', {
    build_id: Id(),
    status_info: Text(),
  }),
  BuildPackagesRecorded: build.event("Inserts the build's build_conda_package_build rows.", {
    build_id: Id(),
    conda_package_build_ids: IdList(),
  }),
  ArtifactStored: build.event('Inserts a build_artifact row.', {
    build_id: Id(),
    build_artifact_id: Id(),
    artifact_type: OneOf(ARTIFACT_TYPES),
    key: Varchar(255, { description: 'storage key, e.g. logs/<build_key>.log; the prefix path for DIRECTORY' }),
  }),
  ArtifactDeleted: build.event('Deletes a build_artifact row.', {
    build_id: Id(),
    build_artifact_id: Id(),
  }),
  BuildCompleted: build.event('Sets status COMPLETED and ended_on (and size when given).', {
    build_id: Id(),
    ended_on: Timestamp(),
    size: Optional(BigCount({ description: 'bytes' })),
  }),
  BuildFailed: build.event('Sets status FAILED, ended_on and status_info (NULL when not given, as conda-store does).', ending()),
  BuildCanceled: build.event('Sets status CANCELED, ended_on and status_info (NULL when not given, as conda-store does).', ending()),
  BuildDeleted: build.event('Soft delete of a COMPLETED or FAILED build: sets deleted_on.', {
    build_id: Id(),
    deleted_on: Timestamp(),
  }),
  BuildSizeUpdated: build.event('Updates build.size.', {
    build_id: Id(),
    size: BigCount({ description: 'bytes' }),
  }),
  BuildPurged: build.event('Deletes the build row, its artifacts and its package links.', {
    build_id: Id(),
  }),
};
