import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number, extra?: string): void;
  setTotal(total: number): void;
  /** Ends it: the bar is cleared of its terminal settings, the plain form says `outcome` (default 'done'). */
  stop(outcome?: string): void;
}

export interface ProgressOptions {
  /** How often the plain line is written at most; default 5 s. */
  intervalMs?: number;
  /** Nothing at all: a command whose data goes to the same terminal (export to a terminal). */
  silent?: boolean;
}

const SILENT: Progress = { update: () => undefined, setTotal: () => undefined, stop: () => undefined };

/** Progress started and not stopped yet. */
const active = new Set<Progress>();
let exitHooked = false;

/**
 * Stops every progress still running: a command that failed or was interrupted, before its error
 * is written. A bar left running kept the terminal without its cursor and line wrapping (it hides
 * both while it draws), and the error was written onto the bar's line.
 */
export function stopProgress(outcome = 'stopped'): void {
  for (const progress of [...active]) progress.stop(outcome);
}

/** `progress`, counted as running until its first stop (later stops do nothing). */
function tracked(progress: Progress): Progress {
  // Whatever ends the process (process.exit included), the terminal gets its settings back.
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => stopProgress());
  }
  const wrapper: Progress = {
    update: (done, extra) => progress.update(done, extra),
    setTotal: (total) => progress.setTotal(total),
    stop(outcome) {
      if (active.delete(wrapper)) progress.stop(outcome);
    },
  };
  active.add(wrapper);
  return wrapper;
}

/**
 * Progress for long work: a bar with rate and ETA on a terminal, a plain line every few seconds
 * otherwise (CI logs, pipes). Both on stderr, so stdout stays free for data. A total of 0 is
 * unknown (standard input that is a pipe): a count and a rate then, without a bar stuck at 100 %.
 */
export function createProgress(label: string, total: number, unit = 'events', { intervalMs = 5000, silent = false }: ProgressOptions = {}): Progress {
  if (silent) return SILENT;
  const known = total > 0;
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: known
          ? `${label} [{bar}] {percentage}% | {value}/{total} ${unit} | {rate}/s | ETA {eta_formatted} {extra}`
          : `${label} {value} ${unit} | {rate}/s {extra}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    const started = Date.now();
    bar.start(total, 0, { rate: 0, extra: '' });
    return tracked({
      update: (done, extra = '') => bar.update(done, { rate: Math.round(done / Math.max((Date.now() - started) / 1000, 0.001)), extra }),
      setTotal: (value) => bar.setTotal(value),
      stop: () => bar.stop(),
    });
  }
  let last = 0;
  let current = 0;
  let currentTotal = total;
  const started = Date.now();
  const line = (extra?: string) => {
    const seconds = (Date.now() - started) / 1000;
    const rate = Math.round(current / Math.max(seconds, 0.001));
    const done = currentTotal > 0 ? `${current}/${currentTotal}` : `${current}`;
    process.stderr.write(`${label}: ${done} ${unit} (${rate}/s)${extra ? ` ${extra}` : ''}\n`);
  };
  return tracked({
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
    stop: (outcome = 'done') => line(outcome),
  });
}
