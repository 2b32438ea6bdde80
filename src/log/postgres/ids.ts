import type pg from 'pg';
import { UnknownIdKindError } from '../errors.js';
import { positiveInteger } from '../positive-integer.js';
import { translateIdError } from './errors.js';
import { sqlFile } from './sql.js';

const IDS_SQL = sqlFile(import.meta.url, 'ids.sql');
const RESERVE_SQL = sqlFile(import.meta.url, 'ids-reserve.sql');

/** `n` ids from the kind's sequence (event_store.ids_<kind>); unique, increasing, maybe not contiguous. */
export async function allocateIds(pool: pg.Pool, kind: string, n: number): Promise<number[]> {
  if (!/^[a-z][a-z0-9_]*$/.test(kind)) throw new UnknownIdKindError(kind);
  positiveInteger('allocateIds: n', n);
  try {
    const { rows } = await pool.query<{ id: number }>({ name: 'cse_ids', text: IDS_SQL, values: [kind, n] });
    return rows.map((row) => row.id);
  } catch (error) {
    throw translateIdError(error, kind);
  }
}

/** The allocator of `kind` will hand out only ids above `through` from now on (ids-reserve.sql). */
export async function reserveIds(pool: pg.Pool, kind: string, through: number): Promise<void> {
  if (!/^[a-z][a-z0-9_]*$/.test(kind)) throw new UnknownIdKindError(kind);
  positiveInteger('reserveIds: through', through);
  try {
    await pool.query({ name: 'cse_ids_reserve', text: RESERVE_SQL, values: [kind, through] });
  } catch (error) {
    throw translateIdError(error, kind);
  }
}
