import { BigCount, Count, Id, Name, Optional, StringList, Text, Timestamp, Varchar } from './common.js';
import { aggregate } from './define.js';

const channel = aggregate('conda_channel', 'channel_id');
// A package's builds go to the package's stream: a channel sync appends one package with its builds at once.
const condaPackage = aggregate('conda_package', 'package_id');

export const channelEvents = {
  CondaChannelRegistered: channel.event('Inserts a conda_channel row.', {
    channel_id: Id(),
    name: Name({ description: 'channel URL or name; unique' }),
  }),
  CondaChannelSynced: channel.event('Updates conda_channel.last_update.', {
    channel_id: Id(),
    last_update: Timestamp(),
  }),
  CondaPackageRegistered: condaPackage.event('Inserts a conda_package row, unique by (channel_id, name, version).', {
    package_id: Id(),
    channel_id: Id(),
    name: Name(),
    version: Varchar(64, { minLength: 1 }),
    license: Optional(Text()),
    license_family: Optional(Varchar(64)),
    summary: Optional(Text()),
    description: Optional(Text()),
  }),
  CondaPackageBuildRegistered: condaPackage.event(
    'Inserts a conda_package_build row, unique by (channel_id, package_id, subdir, build, build_number, sha256).',
    {
      conda_package_build_id: Id(),
      package_id: Id(),
      channel_id: Id(),
      build: Varchar(64, { description: 'build string' }),
      build_number: Count(),
      depends: StringList(),
      constrains: Optional(StringList()),
      md5: Varchar(255),
      sha256: Varchar(64),
      size: BigCount({ description: 'bytes' }),
      subdir: Optional(Varchar(64, { description: 'e.g. linux-64, noarch' })),
      timestamp: Optional(BigCount({ description: 'repodata timestamp, usually milliseconds since the epoch' })),
    },
  ),
};
