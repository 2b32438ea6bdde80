/**
 * Resolves after `ms`, or as soon as `signal` aborts (at once if it already has). The abort
 * listener goes with the timer: a long-lived signal (a service's) would otherwise collect one per
 * wait.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Waits for `promise` at most `ms`: true if it settled in time (fulfilled or rejected: the caller
 * handles its outcome), false otherwise. The timer goes as soon as it settles, so that a stop does
 * not wait for it.
 */
export async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([promise.then(() => true, () => true), sleep(ms, timer.signal).then(() => false)]);
  } finally {
    timer.abort();
  }
}

/**
 * `promise`'s value, or undefined as soon as `signal` aborts (at once if it already has): for a
 * wait that a stop must not be held by. `promise` goes on; its rejection after the abort is
 * dropped. The abort listener goes once either settles.
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  promise.catch(() => undefined);
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const aborted = () => resolve(undefined);
    signal.addEventListener('abort', aborted, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', aborted));
  });
}
