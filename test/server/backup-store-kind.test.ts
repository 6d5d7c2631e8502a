/**
 * `updraft backup` and `updraft restore` and `<dataDir>/store.json` (server/store-kind.ts).
 * A data directory that moved from SQLite to PostgreSQL keeps the `updraft.db` of its SQLite
 * days: backup, given no --db, copied that stale file and reported it as the database
 * ("database: updraft.db, as of one instant"), as every other offline reader of the store
 * refused to (store-kind.test.ts). It refuses in the same one line, making nothing. And a
 * restore of a backup of the SQLite days into a directory whose server now runs on PostgreSQL
 * put back a record saying sqlite (or none, a backup from before store.json), after which the
 * offline readers took the restored updraft.db for the store: the record is kept. And a backup
 * with no marker whose store.json says PostgreSQL is refused by `restore --unmarked`, which
 * checked its stale updraft.db as the database.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';
import { registerDevice, startTestServer } from '../helpers/server.ts';

describe('backup and restore of a data directory whose server moved to PostgreSQL', () => {
  const scratch = new Scratch();
  after(() => scratch.release());

  /** A data directory a real server ran on with SQLite (one device registered), stopped. */
  async function sqliteDays(): Promise<string> {
    const dataDir = await scratch.tmp('updraft-bsk-data-');
    const ts = await startTestServer({ dataDir });
    try {
      await registerDevice(ts, 'old-1');
    } finally {
      await ts.stop();
    }
    assert.deepEqual(JSON.parse(await readFile(path.join(dataDir, 'store.json'), 'utf8')), { store: 'sqlite' }, 'the start recorded sqlite');
    return dataDir;
  }

  it('backup without --db refuses, in one line, a directory whose server last ran on PostgreSQL, and makes no copy', async () => {
    const dataDir = await sqliteDays();
    // the server then moved to PostgreSQL: its start records it (ca-drop-previous.test.ts shows a real one)
    await writeFile(path.join(dataDir, 'store.json'), '{"store":"postgres"}\n');
    const out = path.join(await scratch.tmp('updraft-bsk-out-'), 'copy');
    const r = await runCli(['backup', '--data-dir', dataDir, '--out', out]);
    assert.notEqual(r.code, 0, `refused: ${r.stdout}${r.stderr}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, /^updraft: error: the server of .* last started on PostgreSQL \(store\.json\), so its updraft\.db, if any, is not the store it uses; give the store the server uses with --db <url> or --config <file>$/, r.stderr);
    assert.equal(existsSync(out), false, 'no copy made of the stale updraft.db');

    // the record saying sqlite again (a server started on it), the file is the store and is copied
    await writeFile(path.join(dataDir, 'store.json'), '{"store":"sqlite"}\n');
    const ok = await runCli(['backup', '--data-dir', dataDir, '--out', out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.ok(existsSync(path.join(out, 'updraft.db')), 'updraft.db copied when the record says sqlite');
  });

  it('restore of a backup of the SQLite days into a directory now on PostgreSQL keeps its record, and says so', async () => {
    const dataDir = await sqliteDays();
    const backup = path.join(await scratch.tmp('updraft-bsk-backup-'), 'copy');
    const made = await runCli(['backup', '--data-dir', dataDir, '--out', backup]);
    assert.equal(made.code, 0, made.stderr);
    await writeFile(path.join(dataDir, 'store.json'), '{"store":"postgres"}\n');

    const r = await runCli(['restore', backup, '--data-dir', dataDir]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /its server last ran on PostgreSQL: store\.json says so still \(the backup said otherwise\), so the backup's updraft\.db, if any, is not read as its store; start it with --db/, r.stdout);
    assert.deepEqual(JSON.parse(await readFile(path.join(dataDir, 'store.json'), 'utf8')), { store: 'postgres' }, 'the record of PostgreSQL kept');
    assert.ok(existsSync(path.join(dataDir, 'updraft.db')), "the backup's updraft.db restored");
    // so the offline readers refuse the restored file as the store, as before the restore
    const again = await runCli(['backup', '--data-dir', dataDir, '--out', path.join(await scratch.tmp('updraft-bsk-out-'), 'copy')]);
    assert.notEqual(again.code, 0, `the restored updraft.db is not taken for the store: ${again.stdout}`);
    assert.match(again.stderr, /last started on PostgreSQL \(store\.json\)/, again.stderr);

    // a restore into a directory on SQLite says nothing of it and takes the backup's record
    await writeFile(path.join(dataDir, 'store.json'), '{"store":"sqlite"}\n');
    const plain = await runCli(['restore', backup, '--data-dir', dataDir]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stdout, /PostgreSQL/, 'nothing said of PostgreSQL');
    assert.deepEqual(JSON.parse(await readFile(path.join(dataDir, 'store.json'), 'utf8')), { store: 'sqlite' }, "the backup's record");

    // a backup with no marker whose store.json says PostgreSQL (a stale updraft.db copied as the
    // database, then cut short): --unmarked checked that file as the database, and restored it
    await unlink(path.join(backup, 'updraft-backup.json'));
    await writeFile(path.join(backup, 'store.json'), '{"store":"postgres"}\n');
    const unmarked = await runCli(['restore', backup, '--data-dir', dataDir, '--unmarked']);
    assert.equal(unmarked.code, 2, `refused: ${unmarked.stdout}${unmarked.stderr}`);
    assert.equal(unmarked.stderr.split('\n').length, 2, `one line: ${unmarked.stderr}`);
    assert.match(unmarked.stderr, /has no marker, and its store\.json says its server ran on PostgreSQL: its updraft\.db is a stale file of the SQLite days, not the database/, unmarked.stderr);
  });
});
