import test from 'ava';
import { unlessAborted } from '../src/sleep.js';

test('unlessAborted gives the value, or the rejection, when the promise settles first', async (t) => {
  const signal = new AbortController().signal;
  t.is(await unlessAborted(Promise.resolve(7), signal), 7);
  await t.throwsAsync(unlessAborted(Promise.reject(new Error('refused')), signal), { message: 'refused' });
});

test('unlessAborted gives undefined once the signal aborts, at once if it has, and drops a later rejection', async (t) => {
  const controller = new AbortController();
  let fail!: (error: Error) => void;
  const pending = new Promise<number>((_, reject) => (fail = reject));
  const waiting = unlessAborted(pending, controller.signal);
  controller.abort();
  t.is(await waiting, undefined);
  fail(new Error('too late')); // no unhandled rejection
  t.is(await unlessAborted(new Promise<number>(() => undefined), controller.signal), undefined);
});
