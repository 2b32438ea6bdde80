import { Id, Name, Optional, Text, Timestamp } from './common.js';
import { aggregate } from './define.js';

const environment = aggregate('environment', 'environment_id');

export const environmentEvents = {
  EnvironmentCreated: environment.event('Inserts an environment row, with current_build_id null.', {
    environment_id: Id(),
    namespace_id: Id(),
    name: Name({ description: 'unique within the namespace' }),
    description: Optional(Text()),
  }),
  EnvironmentDescriptionUpdated: environment.event('Updates environment.description.', {
    environment_id: Id(),
    description: Text(),
  }),
  EnvironmentCurrentBuildSet: environment.event('Sets environment.current_build_id (the build must belong to the environment).', {
    environment_id: Id(),
    current_build_id: Id(),
  }),
  EnvironmentDeleted: environment.event('Soft delete: sets deleted_on on the environment and its builds.', {
    environment_id: Id(),
    deleted_on: Timestamp(),
  }),
  EnvironmentPurged: environment.event('Deletes the environment row (after its builds are purged).', {
    environment_id: Id(),
  }),
};
