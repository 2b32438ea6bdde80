/**
 * Rules between the fields of one event's data that its JSON Schema does not state (no standard
 * JSON Schema compares one field with another): checked at append, as the other append-time rules,
 * so that the schemas producers validate against stay the whole of what a single field must be.
 */
import type { CatalogueEvent } from '../catalogue/index.js';

/** Why `event`'s data breaks a rule between its fields, or undefined. */
export function brokenDataRule(event: CatalogueEvent): string | undefined {
  switch (event.type) {
    case 'SpecificationRegistered': {
      // conda-store takes the row's name from the spec (conda-store-tables.md: name = spec["name"]).
      const specName = event.data.spec.name;
      if (typeof specName === 'string' && specName !== event.data.name) {
        return `name must be the spec's name, ${JSON.stringify(specName)} (got ${JSON.stringify(event.data.name)})`;
      }
      return undefined;
    }
    case 'BuildScheduled': {
      // A version 3 build's key is its cached hash, and only version 3 caches one
      // (conda-store-tables.md, build.hash): without it, the build's key cannot be derived.
      const { build_key_version: version, hash } = event.data;
      if (version === 3 && hash == null) return 'hash is required with build_key_version 3 (the cached build key)';
      if (version !== 3 && hash != null) return `hash must be absent or null with build_key_version ${version} (only version 3 caches its build key)`;
      return undefined;
    }
    default:
      return undefined;
  }
}
