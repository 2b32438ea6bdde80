/**
 * `npm run schemas`: writes schemas/<EventType>.json and schemas/envelope.json from the catalogue
 * and removes schema files of types that no longer exist. `--check` writes nothing and exits 1
 * if the files are out of date (for CI).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsonSchemaFiles } from './json-schema.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../schemas');
const check = process.argv.includes('--check');

const files = jsonSchemaFiles();
const stale = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json') && !files.has(f)) : [];
const changed = [...files].filter(([name, content]) => {
  const file = path.join(dir, name);
  return !fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== content;
});

if (check) {
  for (const [name] of changed) console.error(`schemas/${name} is out of date`);
  for (const name of stale) console.error(`schemas/${name} is stale`);
  if (changed.length || stale.length) {
    console.error('run `npm run schemas`');
    process.exit(1);
  }
  console.log(`schemas/ is up to date (${files.size} files)`);
} else {
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, content] of changed) fs.writeFileSync(path.join(dir, name), content);
  for (const name of stale) fs.rmSync(path.join(dir, name));
  console.log(`schemas/: ${files.size} files, ${changed.length} written, ${stale.length} removed`);
}
