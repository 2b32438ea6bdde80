/** The server settings `serve` warns about at start (src/db/server-settings.ts). */
import test from 'ava';
import { serverSettings, settingsWarnings } from '../src/db/server-settings.js';
import { serverUrl, withClient } from './helpers/database.js';

test('autovacuum off, or track_counts off, is warned about; both on is not', (t) => {
  t.deepEqual(settingsWarnings({ autovacuum: 'on', track_counts: 'on' }), []);
  t.regex(settingsWarnings({ autovacuum: 'off', track_counts: 'on' }).join('\n'), /^autovacuum is off on this PostgreSQL server: no table statistics are taken/);
  t.regex(settingsWarnings({ autovacuum: 'on', track_counts: 'off' }).join('\n'), /^track_counts is off \(for this server, or this database or role\), which keeps autovacuum from running/);
  t.is(settingsWarnings({ autovacuum: 'off', track_counts: 'off' }).length, 1, 'one warning: autovacuum is off');
});

test('the settings read are the server\'s own', async (t) => {
  const expected = await withClient(serverUrl, async (client) => ({
    autovacuum: (await client.query<{ autovacuum: string }>('SHOW autovacuum')).rows[0]!.autovacuum,
    track_counts: (await client.query<{ track_counts: string }>('SHOW track_counts')).rows[0]!.track_counts,
  }));
  t.deepEqual(await serverSettings(serverUrl), expected);
});
