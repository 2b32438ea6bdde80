/**
 * Runs the real CLI (`node bin/conda-store-events.js ...`) as a child process, the way an operator
 * does: for tests of append/export, and of serve, catch-up and status.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const cliPath = path.join(root, 'bin', 'conda-store-events.js');

export interface CliOptions {
  /** Added to (and overriding) the test process's environment; LOG_LEVEL defaults to warn. */
  env?: Record<string, string>;
  /** Written to the child's stdin, which is then closed. Without it, stdin is closed at once. */
  input?: string;
  /** The child is killed (SIGKILL) after this long and the run fails; default 60 s. */
  timeoutMs?: number;
  /** Working directory; default the repository root. */
  cwd?: string;
}

export interface CliResult {
  /** The exit code, or null when the child was ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of a child: the test's own, LOG_LEVEL=warn, then the given variables. */
export function cliEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, LOG_LEVEL: 'warn', ...env };
}

/** A database URL as the CLI's environment: `{ DATABASE_URL: url }`. */
export function databaseEnv(url: string, env: Record<string, string> = {}): Record<string, string> {
  return { DATABASE_URL: url, ...env };
}

/**
 * Starts the CLI and returns the child process (for crash and signal tests): stdio are pipes,
 * stdin stays open unless `input` is given.
 */
export function spawnCli(args: string[], options: CliOptions = {}): ChildProcess {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd: options.cwd ?? root,
    env: cliEnv(options.env),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (options.input !== undefined) {
    // A child that exits before reading all of its input closes the pipe: not the test's concern.
    child.stdin!.on('error', () => undefined);
    child.stdin!.end(options.input);
  }
  return child;
}

/** Collects a child's output until it closes: its exit code or signal, stdout and stderr. */
export function waitForExit(child: ChildProcess, timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${child.spawnargs.slice(1).join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${Buffer.concat(stdout).toString()}\nstderr: ${Buffer.concat(stderr).toString()}`,
        ),
      );
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(stdout).toString(), stderr: Buffer.concat(stderr).toString() });
    });
  });
}

/** Runs the CLI to completion. */
export function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, { ...options, input: options.input ?? '' });
  return waitForExit(child, options.timeoutMs);
}

/** A JSON log line a CLI wrote on stderr. */
export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

/** A CLI child process being watched: its JSON log lines so far, its output, its exit. */
export interface Watched {
  child: ChildProcess;
  lines: LogLine[];
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
}

/**
 * Drains a child's stdout and stderr (collecting stderr's JSON log lines) and SIGKILLs it when the
 * test ends if it is still running.
 */
export function watchChild(t: ExecutionContext, child: ChildProcess, label: string): Watched {
  const lines: LogLine[] = [];
  let stdout = '';
  let stderr = '';
  let pending = '';
  let done = false;
  child.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr!.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    pending += text;
    const parts = pending.split('\n');
    pending = parts.pop()!;
    for (const line of parts) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  exited.catch(() => undefined); // a spawn error shows when the test awaits the exit
  t.teardown(async () => {
    if (!done) {
      child.kill('SIGKILL');
      await exited.catch(() => undefined);
    }
  });
  return { child, lines, output: () => `${label}\nstdout:\n${stdout}\nstderr:\n${stderr}`, exited, hasExited: () => done };
}
