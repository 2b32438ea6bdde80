import test from 'ava';
import { createStreamVersions } from '../src/log/postgres/stream-versions.js';

test('stream versions: a stream is remembered at the highest version it was seen at', (t) => {
  const versions = createStreamVersions(10);
  versions.reached('build-1', 3);
  versions.reached('build-1', 1);
  t.is(versions.get('build-1'), 3, 'a lower version (a duplicate\'s) does not lower it');
  versions.reached('build-1', 4);
  t.is(versions.get('build-1'), 4);
  t.is(versions.get('build-2'), undefined);
});

test('stream versions: the least recently written streams are forgotten first, and clear() forgets all', (t) => {
  const versions = createStreamVersions(2);
  versions.reached('a', 0);
  versions.reached('b', 0);
  versions.reached('a', 1); // a is now the most recently written
  versions.reached('c', 0);
  t.is(versions.get('b'), undefined);
  t.is(versions.get('a'), 1);
  t.is(versions.get('c'), 0);
  t.is(versions.size, 2);
  versions.clear();
  t.is(versions.size, 0);
  t.throws(() => createStreamVersions(0), { instanceOf: RangeError, message: /knownStreams must be a positive integer/ });
});
