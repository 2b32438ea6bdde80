/**
 * Runs the bench scripts of bench/ one after the other, each in its own process.
 *
 *   npm run bench                      every script
 *   npm run bench -- append            only bench/append.ts
 *   npm run bench -- append --quick    options (anything starting with --) go to every script run
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH_DIR } from './lib.js';

/** Files of bench/ that are helpers, not benches. */
const NOT_BENCHES = new Set(['lib.ts', 'run.ts']);

const argv = process.argv.slice(2);
const names: string[] = [];
const options: string[] = [];
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]!;
  if (arg.startsWith('--')) {
    options.push(arg);
    // An option's value: `--scale 2` (but `--quick` stands alone).
    const next = argv[i + 1];
    if (!arg.includes('=') && next !== undefined && !next.startsWith('--') && /^[\d.]+$/.test(next)) options.push(argv[++i]!);
  } else {
    names.push(arg.replace(/\.ts$/, ''));
  }
}

const available = fs
  .readdirSync(BENCH_DIR)
  .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !NOT_BENCHES.has(file))
  .map((file) => file.replace(/\.ts$/, ''))
  .sort();

const unknown = names.filter((name) => !available.includes(name));
if (unknown.length > 0) {
  console.error(`unknown bench: ${unknown.join(', ')} (available: ${available.join(', ')})`);
  process.exit(2);
}
const selected = names.length > 0 ? available.filter((name) => names.includes(name)) : available;

function runOne(name: string): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, `${name}.ts`), ...options], {
      stdio: 'inherit',
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

let failed = 0;
for (const name of selected) {
  process.stdout.write(`\n=== bench/${name}.ts ${options.join(' ')}\n`);
  const code = await runOne(name);
  if (code !== 0) {
    failed++;
    process.stdout.write(`=== bench/${name}.ts failed (exit code ${code})\n`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
