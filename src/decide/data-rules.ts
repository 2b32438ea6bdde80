/**
 * Rules between the fields of one event's data that its JSON Schema does not state (no standard
 * JSON Schema compares one field with another): checked at append, as the other append-time rules,
 * so that the schemas producers validate against stay the whole of what a single field must be.
 */
import type { CatalogueEvent, ValidationIssue } from '../catalogue/index.js';

/**
 * Which field of `event`'s data breaks a rule between its fields, and why; or undefined. Checked
 * at append (the reason then names the event's stream) and by the producer client before it
 * publishes (src/ingest/publish.ts), so that a producer in TypeScript learns it before JetStream
 * has taken the event.
 */
export function brokenDataRule(event: CatalogueEvent): ValidationIssue | undefined {
  switch (event.type) {
    case 'SpecificationRegistered': {
      // conda-store takes the row's name from the spec (conda-store-tables.md: name = spec["name"]).
      const specName = event.data.spec.name;
      if (typeof specName === 'string' && specName !== event.data.name) {
        return { path: '/data/name', message: `name must be the spec's name, ${JSON.stringify(specName)} (got ${JSON.stringify(event.data.name)})` };
      }
      return undefined;
    }
    case 'BuildScheduled': {
      // A version 3 build's key is its cached hash, and only version 3 caches one
      // (conda-store-tables.md, build.hash): without it, the build's key cannot be derived.
      const { build_key_version: version, hash } = event.data;
      if (version === 3 && hash == null) return { path: '/data/hash', message: 'hash is required with build_key_version 3 (the cached build key)' };
      if (version !== 3 && hash != null) return { path: '/data/hash', message: `hash must be absent or null with build_key_version ${version} (only version 3 caches its build key)` };
      return undefined;
    }
    default:
      return undefined;
  }
}
