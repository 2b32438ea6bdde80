import { Command } from 'commander';

const program = new Command('rebuild-projections')
  .description('rebuild projections from the log into shadow tables, then swap them in atomically')
  .argument('[names...]', 'projections to rebuild (default: those whose definition changed)')
  .option('--all', 'rebuild every projection')
  .option('--dry-run', 'list what would be rebuilt, and why, without rebuilding')
  .option('--batch-size <n>', 'events per batch', '5000')
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
  .action(() => {
    process.stderr.write('error: rebuild-projections is not implemented yet (issue 5)\n');
    process.exit(2);
  });

await program.parseAsync();
