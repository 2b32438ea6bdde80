import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, extra?: string): void;
  setTotal(total: number): void;
  stop(): void;
}

/**
 * Progress for long work: a bar with rate and ETA on a terminal, a plain line every few seconds
 * otherwise (CI logs, pipes). Both on stderr, so stdout stays free for data.
 */
export function createProgress(label: string, total: number, unit = 'events', intervalMs = 5000): Progress {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted} {extra}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = Date.now();
    bar.start(total, 0, { rate: 0, extra: '' });
    return {
      update: (done, extra = '') => bar.update(done, { rate: Math.round(done / Math.max((Date.now() - started) / 1000, 0.001)), extra }),
      setTotal: (value) => bar.setTotal(value),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  let current = 0;
  let currentTotal = total;
  const started = Date.now();
  const line = (extra?: string) => {
    const seconds = (Date.now() - started) / 1000;
    const rate = Math.round(current / Math.max(seconds, 0.001));
    process.stderr.write(`${label}: ${current}/${currentTotal} ${unit} (${rate}/s)${extra ? ` ${extra}` : ''}\n`);
  };
  return {
    update(done, extra) {
      current = done;
      if (Date.now() - last >= intervalMs) {
        last = Date.now();
        line(extra);
      }
    },
    setTotal(value) {
      currentTotal = value;
    },
    stop: () => line('done'),
  };
}
