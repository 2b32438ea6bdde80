import type pg from 'pg';
import type { Fence } from '../types.js';
import { sqlFile, toNumber } from './sql.js';

const RAISE_FENCE_SQL = sqlFile(import.meta.url, 'raise-fence.sql');

/**
 * Raises fence `name` (EventLog.raiseFence). Waits, in the server, for the fenced appends in
 * flight to commit: each holds the fence's row until then (hold-fence.sql).
 */
export async function raiseFence(source: pg.Pool | pg.ClientBase, name: string): Promise<Fence> {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError('raiseFence: the fence needs a name');
  const { rows } = await source.query<{ epoch: string }>({ name: 'cse_raise_fence', text: RAISE_FENCE_SQL, values: [name] });
  return { name, epoch: toNumber(rows[0]!.epoch) };
}
