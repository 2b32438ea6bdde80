import { Option, type Command } from 'commander';
import { allProjections } from '../../projections/index.js';
import { missingMigrations } from '../db/migrate.js';
import { readSchema } from '../diagram/read-schema.js';
import { DIAGRAM_FORMATS, renderDiagram, type DiagramFormat } from '../diagram/render.js';
import { runCommand, withPool } from './runtime.js';

export function diagramCommand(program: Command): void {
  program
    .command('diagram')
    .description('the ER diagram of the projection tables, read from the live database, on stdout')
    .addOption(new Option('--format <format>', 'Mermaid (erDiagram) or Graphviz DOT').choices(DIAGRAM_FORMATS).default('mermaid'))
    .addHelpText('after', `
Examples:
  conda-store-events diagram > tables.mmd
  conda-store-events diagram --format dot | dot -Tsvg > tables.svg`)
    .action((options: { format: DiagramFormat }) =>
      runCommand(async ({ config }) => {
        // A database never migrated has no tables to draw: say what to do, as every command does,
        // rather than which tables are missing.
        await missingMigrations(config.databaseUrl);
        const tables = [...new Set(allProjections.flatMap((projection) => projection.tables))];
        await withPool(config.databaseUrl, async (pool) => {
          const client = await pool.connect();
          try {
            process.stdout.write(renderDiagram(await readSchema(client, tables), options.format));
          } finally {
            client.release();
          }
        });
      }),
    );
}
