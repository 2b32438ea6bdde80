/**
 * An ER diagram of the projection tables as text: Mermaid (`erDiagram`, which GitHub and
 * Docusaurus render) or Graphviz DOT (`dot -Tsvg`), the forms conda-store's docs build their
 * database diagram in. Pure: schema in, text out.
 */
import type { DiagramColumn, DiagramSchema } from './read-schema.js';

export const DIAGRAM_FORMATS = ['mermaid', 'dot'] as const;
export type DiagramFormat = (typeof DIAGRAM_FORMATS)[number];

export function renderDiagram(schema: DiagramSchema, format: DiagramFormat): string {
  return format === 'mermaid' ? toMermaid(schema) : toDot(schema);
}

const keysOf = (column: DiagramColumn) =>
  [column.primaryKey && 'PK', column.foreignKey && 'FK', column.unique && 'UK'].filter((key): key is string => Boolean(key));

/** Mermaid's words allow letters, digits, `_`, `-`, brackets and parentheses only. */
const mermaidWord = (text: string) => text.replace(/[^A-Za-z0-9_\-[\]()]/g, '_');

export function toMermaid({ tables, relations }: DiagramSchema): string {
  const lines = ['erDiagram'];
  for (const table of tables) {
    lines.push(`  ${mermaidWord(table.name)} {`);
    for (const column of table.columns) {
      const keys = keysOf(column);
      lines.push(`    ${mermaidWord(column.type)} ${mermaidWord(column.name)}${keys.length ? ` ${keys.join(', ')}` : ''}${column.notNull ? '' : ' "nullable"'}`);
    }
    lines.push('  }');
  }
  // Parent exactly one (or zero or one for a nullable key), child zero or more.
  for (const relation of relations) {
    lines.push(`  ${mermaidWord(relation.parent)} ${relation.optional ? '|o' : '||'}--o{ ${mermaidWord(relation.child)} : "${relation.columns.join(', ')}"`);
  }
  return `${lines.join('\n')}\n`;
}

const dotId = (text: string) => `"${text.replace(/["\\]/g, '\\$&')}"`;
const html = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function toDot({ tables, relations }: DiagramSchema): string {
  const lines = [
    'digraph projection_tables {',
    '  graph [rankdir=LR, fontname="Helvetica"];',
    '  node [shape=plain, fontname="Helvetica"];',
    '  edge [fontname="Helvetica", fontsize=10, arrowhead=none, arrowtail=crow, dir=both];',
  ];
  for (const table of tables) {
    const rows = table.columns.map((column) => {
      const keys = keysOf(column);
      const text = `${column.name}: ${column.type}${keys.length ? ` ${keys.join(', ')}` : ''}${column.notNull ? '' : ' (nullable)'}`;
      return `<tr><td port="${html(column.name)}" align="left">${html(text)}</td></tr>`;
    });
    lines.push(`  ${dotId(table.name)} [label=<<table border="0" cellborder="1" cellspacing="0"><tr><td bgcolor="lightgrey"><b>${html(table.name)}</b></td></tr>${rows.join('')}</table>>];`);
  }
  for (const relation of relations) {
    const style = relation.optional ? ', style=dashed' : '';
    lines.push(`  ${dotId(relation.child)}:${dotId(relation.columns[0]!)} -> ${dotId(relation.parent)}:${dotId(relation.parentColumns[0]!)} [label=${dotId(relation.columns.join(', '))}${style}];`);
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
