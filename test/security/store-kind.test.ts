/**
 * `<dataDir>/store.json` (server/store-kind.ts) beyond the CA commands: `broker
 * mosquitto-config --offline`, given no --db, refuses a data directory whose server last ran on
 * PostgreSQL rather than writing the broker's passwd and ACL from the stale updraft.db its
 * SQLite days left (review of a8d623e: revoked devices not denied, newer ones missing); and a
 * server started on SQLite there (a forgotten UPDRAFT_DB) says so in a WARN and records sqlite.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { setupMosquittoTls } from '../helpers/mosquitto.ts';
import { Scratch } from '../helpers/scratch.ts';
import { registerDevice, startTestServer } from '../helpers/server.ts';
import { lineLogger } from './support.ts';

describe('store.json beyond the CA commands', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  it('mosquitto-config --offline without --db refuses a data directory whose server last ran on PostgreSQL, in one line, writing nothing', async () => {
    const s = await setupMosquittoTls(scratch.tmp, 'updraft-sk-broker-');
    const ts = await startTestServer({ dataDir: s.dataDir });
    try {
      await registerDevice(ts, 'old-1');
    } finally {
      await ts.stop();
    }
    assert.ok(existsSync(path.join(s.dataDir, 'updraft.db')), 'the SQLite days left an updraft.db');
    // the server then moved to PostgreSQL: its start records it (ca-drop-previous.test.ts shows a real one)
    await writeFile(path.join(s.dataDir, 'store.json'), '{"store":"postgres"}\n');
    const r = await runCli(['broker', 'mosquitto-config', '--offline', '--data-dir', s.dataDir, ...s.flags, '--updraft-ca']);
    assert.notEqual(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, /^updraft: error: the server of .* last started on PostgreSQL \(store\.json\), so its updraft\.db, if any, is not the store it uses; give the store the server uses with --db <url> or --config <file>$/, r.stderr);
    assert.ok(!existsSync(path.join(s.out, 'passwd')), 'no passwd written from the stale registry');
    assert.ok(!existsSync(path.join(s.out, 'acl')), 'no ACL written from the stale registry');

    // the record saying sqlite again (a server started on it), the file is the store
    await writeFile(path.join(s.dataDir, 'store.json'), '{"store":"sqlite"}\n');
    await s.generate(['--updraft-ca']);
    assert.match(await readFile(path.join(s.out, 'passwd'), 'utf8'), /^old-1:/m, 'read from updraft.db when the record says sqlite');
  });

  it('a server started on SQLite where store.json says postgres warns that this start uses the embedded store, and records sqlite', async () => {
    const dataDir = await scratch.tmp('updraft-sk-server-');
    await writeFile(path.join(dataDir, 'store.json'), '{"store":"postgres"}\n');
    const lines: string[] = [];
    const ts = await startTestServer({ dataDir, logger: lineLogger(lines) });
    await ts.stop();
    const warnings = lines.map((l) => JSON.parse(l) as { level: string; msg: string }).filter((l) => l.level === 'warn' && /store\.json/.test(l.msg));
    assert.equal(warnings.length, 1, `one warning about the record: ${lines.join('\n')}`);
    assert.match(warnings[0]!.msg, /^the server of .* last ran on PostgreSQL \(store\.json\); this start uses the embedded SQLite store \(.*updraft\.db\): if that is not meant, stop it and give --db or UPDRAFT_DB$/, warnings[0]!.msg);
    assert.deepEqual(JSON.parse(await readFile(path.join(dataDir, 'store.json'), 'utf8')), { store: 'sqlite' }, 'the new kind still recorded');

    // a start on SQLite where SQLite ran last says nothing of it
    const again: string[] = [];
    const second = await startTestServer({ dataDir, logger: lineLogger(again) });
    await second.stop();
    assert.deepEqual(again.filter((l) => /store\.json/.test(l)), [], 'no warning when the record says sqlite');
  });
});
