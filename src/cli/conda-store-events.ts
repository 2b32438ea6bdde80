import { Command } from 'commander';
import { appendCommand } from './append.js';
import { catchUpCommand } from './catch-up.js';
import { diagramCommand } from './diagram.js';
import { exportCommand } from './export.js';
import { serveCommand } from './serve.js';
import { statusCommand } from './status.js';

const program = new Command('conda-store-events')
  .description('conda-store-events: the event log of conda-store\'s data and the projections that keep its tables')
  .addHelpText('after', `
Configuration (environment): DATABASE_URL, EVENT_LOG (postgres; eventstoredb is not available yet),
NATS_URL, LOG_LEVEL. See README.md.`)
  .showHelpAfterError()
  // An extra argument is a usage error, not ignored: `append a.ndjson b.ndjson` appended a alone.
  // Set before the commands are added, which inherit it.
  .allowExcessArguments(false)
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));

serveCommand(program);
catchUpCommand(program);
statusCommand(program);
appendCommand(program);
exportCommand(program);
diagramCommand(program);

await program.parseAsync();
