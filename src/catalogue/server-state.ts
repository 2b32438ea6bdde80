import { Type } from '@sinclair/typebox';
import { BigCount, Id, JsonValue, Text } from './common.js';
import { aggregate, singleton } from './define.js';

const configuration = singleton('conda_store_configuration');
const keyvaluestore = aggregate('keyvaluestore', 'prefix');
const worker = aggregate('worker', 'id');

export const serverStateEvents = {
  StorageUsageReported: configuration.event('Upserts the single conda_store_configuration row (id 1).', {
    disk_usage: BigCount({ description: 'bytes' }),
    free_storage: BigCount({ description: 'bytes' }),
    total_storage: BigCount({ description: 'bytes' }),
  }),
  SettingStored: keyvaluestore.event('Upserts the keyvaluestore row of (prefix, key).', {
    id: Id({ description: 'keyvaluestore.id' }),
    prefix: Text({ minLength: 1, description: 'setting, setting/<namespace> or setting/<namespace>/<environment>' }),
    key: Text({ minLength: 1, description: 'setting name' }),
    value: JsonValue({ description: 'any JSON value, null included' }),
  }),
  WorkerInitialized: worker.event('Upserts a worker row.', {
    id: Id({ description: 'worker.id' }),
    initialized: Type.Boolean(),
  }),
};
