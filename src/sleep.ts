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
