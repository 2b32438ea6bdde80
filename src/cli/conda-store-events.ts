import { Command } from 'commander';
import { appendCommand } from './append.js';
import { exportCommand } from './export.js';

const program = new Command('conda-store-events')
  .description('conda-store-events: the event log of conda-store\'s data and the projections that keep its tables')
  .addHelpText('after', `
Configuration (environment): DATABASE_URL, EVENT_LOG (postgres|eventstoredb), EVENTSTOREDB_URL,
NATS_URL, LOG_LEVEL. See README.md.`)
  .showHelpAfterError()
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));

appendCommand(program);
exportCommand(program);

await program.parseAsync();
