import { Type } from '@sinclair/typebox';
import { Id, JsonObject, Name, Optional, Timestamp, Varchar } from './common.js';
import { aggregate } from './define.js';

const specification = aggregate('specification', 'specification_id');

export const specificationEvents = {
  SpecificationRegistered: specification.event('Inserts a specification row.', {
    specification_id: Id(),
    name: Name({ description: 'spec["name"]' }),
    spec: JsonObject({ description: 'the environment.yaml document, or a conda-lock lockfile when is_lockfile' }),
    sha256: Varchar(255, { minLength: 1, description: 'content address of spec; unique' }),
    created_on: Optional(Timestamp()),
    // Required, as events.md lists it: conda-store always knows it, and an explicit value keeps
    // projections free of defaults.
    is_lockfile: Type.Boolean(),
  }),
};
