/**
 * `updraft restore` on the data directory of a server killed with SIGKILL (its updraft.db-wal
 * left behind): the restored server has the backup's state, not the crashed one's; the old
 * contents are moved aside whole. Refused while a server runs on the directory, and for a
 * directory that is not a finished backup.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { restoreDataDir } from '../../src/server/restore.ts';
import { runCli, startCli, type CliProcess } from '../helpers/cli.ts';

const SERVER_FLAGS = ['--mqtt-port', '0', '--mqtt-tls-port', '-1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'];

/** A server process on `dataDir`, with its URL and operator token. */
async function serve(dataDir: string): Promise<{ proc: CliProcess; url: string; token: string }> {
  const proc = startCli(['server', '--data-dir', dataDir, ...SERVER_FLAGS]);
  try {
    const url = (await proc.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
    await proc.waitFor(/data in /);
    const token = (await readFile(path.join(dataDir, 'operator-token'), 'utf8')).trim();
    return { proc, url, token };
  } catch (err) {
    await proc.kill('SIGKILL');
    throw err;
  }
}

async function register(s: { url: string; token: string }, deviceId: string): Promise<void> {
  const res = await fetch(`${s.url}/api/v1/devices`, { method: 'POST', headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ deviceId }) });
  assert.equal(res.status, 201, await res.text());
}

async function deviceIds(s: { url: string; token: string }): Promise<string[]> {
  const body = (await (await fetch(`${s.url}/api/v1/devices`, { headers: { authorization: `Bearer ${s.token}` } })).json()) as { items: { deviceId: string }[] };
  return body.items.map((d) => d.deviceId).sort();
}

describe('updraft restore', () => {
  let dir: string;
  const running: CliProcess[] = [];
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-restore-'));
  });
  after(async () => {
    for (const p of running) await p.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  it("restores over a crashed server's directory: its stale WAL is moved aside, not replayed over the backup", async () => {
    const data = path.join(dir, 'data');
    const backup = path.join(dir, 'bk');
    const first = await serve(data);
    running.push(first.proc);
    await register(first, 'dev-before');
    const b = await runCli(['backup', '--data-dir', data, '--out', backup]);
    assert.equal(b.code, 0, b.stderr);
    await register(first, 'dev-after');
    await first.proc.kill('SIGKILL');
    assert.ok((await stat(path.join(data, 'updraft.db-wal'))).size > 0, 'the crash left a WAL');

    // refused while a server holds the directory
    const holder = await serve(data);
    running.push(holder.proc);
    const refused = await runCli(['restore', backup, '--data-dir', data]);
    assert.equal(refused.code, 2, refused.stderr);
    assert.equal(refused.stderr, `updraft: error: a server is using ${data} (its updraft.db is open in another process): stop it, then restore\n`);
    assert.deepEqual(await deviceIds(holder), ['dev-after', 'dev-before'], 'nothing changed');
    // (a server folds a stale WAL into the file as it starts: this one writes its own before it crashes)
    await register(holder, 'dev-holder');
    await holder.proc.kill('SIGKILL');
    assert.ok((await stat(path.join(data, 'updraft.db-wal'))).size > 0, 'crashed again, the WAL is there');

    const r = await runCli(['restore', backup, '--data-dir', data]);
    assert.equal(r.code, 0, r.stderr);
    const aside = (await readdir(dir)).filter((n) => n.startsWith('data.before-restore-'));
    assert.equal(aside.length, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`^restored ${backup} into ${data}; start the server on it\\n {2}its previous contents \\(.*operator-token.*updraft\\.db.*\\) are in ${path.join(dir, aside[0]!)}: delete them once the restored server is checked\\n {2}files: `));
    assert.deepEqual((await readdir(data)).filter((n) => n.startsWith('updraft.db')), ['updraft.db'], 'no -wal nor -shm beside the restored database');
    const old = new Database(path.join(dir, aside[0]!, 'updraft.db'), { readonly: true });
    const oldIds = old.prepare('SELECT device_id AS id FROM devices ORDER BY device_id').all();
    old.close();
    assert.deepEqual(oldIds, [{ id: 'dev-after' }, { id: 'dev-before' }, { id: 'dev-holder' }], "the crashed server's state moved aside whole, not deleted");

    const restored = await serve(data);
    running.push(restored.proc);
    assert.deepEqual(await deviceIds(restored), ['dev-before'], "the backup's devices, not the crashed server's");
    await restored.proc.kill('SIGTERM');
  });

  it('two restores within one second each move the contents aside, into directories of their own', async () => {
    const data = path.join(dir, 'twice');
    const backup = path.join(dir, 'bk-twice');
    const s = await serve(data);
    running.push(s.proc);
    await register(s, 'dev-twice');
    const b = await runCli(['backup', '--data-dir', data, '--out', backup]);
    assert.equal(b.code, 0, b.stderr);
    await s.proc.kill('SIGTERM');
    // the same second (the aside's name has whole seconds): the second restore failed with
    // EEXIST, "try again in a second", until 2026-12-06 (a flaky test found it)
    const at = new Date('2026-12-06T12:00:00.250Z');
    const first = await restoreDataDir(backup, data, at);
    const second = await restoreDataDir(backup, data, new Date(at.getTime() + 500));
    assert.equal(first.aside, `${data}.before-restore-20261206T120000Z`, 'the first aside');
    assert.equal(second.aside, `${data}.before-restore-20261206T120000Z-2`, 'the second, its own');
    assert.ok(second.movedAside?.includes('updraft.db'), "the first restore's files moved aside by the second");
    assert.ok((await readdir(first.aside!)).includes('operator-token'), 'the first aside kept whole');
  });

  it('refuses, in one line, a directory that is not a finished backup, and leaves the data directory alone', async () => {
    const data = path.join(dir, 'data2');
    const s = await serve(data);
    running.push(s.proc);
    const backup = path.join(dir, 'bk2');
    assert.equal((await runCli(['backup', '--data-dir', data, '--out', backup])).code, 0);
    await s.proc.kill('SIGTERM');
    await unlink(path.join(backup, 'updraft-backup.json')); // as a backup cut short leaves it
    await writeFile(path.join(dir, 'not-a-dir'), 'x');
    for (const [from, message] of [
      [backup, `updraft: error: ${backup} is not a whole backup made by updraft backup (it has no valid updraft-backup.json, which a backup writes last): restore only a backup that finished; a backup made by an Updraft older than 2026-12-04 has none: if it finished, restore it with --unmarked (its database and builds are checked)\n`],
      [path.join(dir, 'nothing'), `updraft: error: backup ${path.join(dir, 'nothing')} does not exist\n`],
    ] as const) {
      const r = await runCli(['restore', from, '--data-dir', data]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, message);
    }
    assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('data2.before-restore-')), []);
  });

  it('restores over a database file that is damaged (not SQLite any more), moving it aside', async () => {
    const data = path.join(dir, 'data3');
    const s = await serve(data);
    running.push(s.proc);
    const backup = path.join(dir, 'bk3');
    assert.equal((await runCli(['backup', '--data-dir', data, '--out', backup])).code, 0);
    await s.proc.kill('SIGTERM');
    await writeFile(path.join(data, 'updraft.db'), Buffer.alloc(8192, 0x5a));
    const r = await runCli(['restore', backup, '--data-dir', data]);
    assert.equal(r.code, 0, r.stderr);
    const aside = (await readdir(dir)).filter((n) => n.startsWith('data3.before-restore-'));
    assert.deepEqual(await readFile(path.join(dir, aside[0]!, 'updraft.db')), Buffer.alloc(8192, 0x5a), 'the damaged file kept, aside');
    const restored = await serve(data);
    running.push(restored.proc);
    assert.deepEqual(await deviceIds(restored), []);
    await restored.proc.kill('SIGTERM');
  });
  it('restores a backup with no marker (made before the marker existed) with --unmarked, after checking what can be checked of it', async () => {
    const data = path.join(dir, 'data4');
    const s = await serve(data);
    running.push(s.proc);
    await register(s, 'dev-old');
    const up = await fetch(`${s.url}/api/v1/artifacts?name=fw&version=1.0.0`, { method: 'POST', headers: { authorization: `Bearer ${s.token}` }, body: new Uint8Array(Buffer.from('firmware 1.0.0')) });
    assert.equal(up.status, 201);
    const sha = ((await up.json()) as { sha256: string }).sha256;
    const backup = path.join(dir, 'bk4');
    assert.equal((await runCli(['backup', '--data-dir', data, '--out', backup])).code, 0);
    await s.proc.kill('SIGTERM');
    await unlink(path.join(backup, 'updraft-backup.json')); // as an Updraft before 2026-12-04 wrote it
    const build = path.join(backup, 'artifacts', 'sha256', sha.slice(0, 2), sha);
    const bytes = await readFile(build);
    const target = path.join(dir, 'data4-restored');
    // the database check, which runs for minutes on a database of several GB, says it started
    const checking = /^updraft restore: checking the database \(\d+\.\d MB\)\.\.\.\n/;
    const refused = async (why: RegExp, dbChecked = false) => {
      const r = await runCli(['restore', backup, '--data-dir', target, '--unmarked']);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(checking.test(r.stderr), dbChecked, r.stderr);
      const error = r.stderr.replace(checking, '');
      assert.match(error, why);
      assert.equal(error.split('\n').length, 2, `one line: ${error}`);
      await assert.rejects(stat(target), 'nothing restored');
    };
    // cut short: a build's bytes short of their record, the signing key missing, a damaged database
    await writeFile(build, bytes.subarray(0, 4));
    await refused(new RegExp(`^updraft: error: ${backup} has no marker and lacks the bytes of fw@1\\.0\\.0`), true);
    await writeFile(build, bytes);
    const key = path.join(backup, 'keys', 'software-signing.key');
    const keyBytes = await readFile(key);
    await unlink(key);
    await refused(/has no marker and no keys\/software-signing\.key: it is not a whole backup/);
    await writeFile(key, keyBytes, { mode: 0o600 });
    const caKey = path.join(backup, 'pki', 'ca.key');
    const caKeyBytes = await readFile(caKey);
    await unlink(caKey);
    await refused(/has no marker and no pki\/ca\.key: it is not a whole backup/);
    await writeFile(caKey, caKeyBytes, { mode: 0o600 });
    const db = await readFile(path.join(backup, 'updraft.db'));
    await writeFile(path.join(backup, 'updraft.db'), db.subarray(0, Math.floor(db.length / 2)));
    await refused(/has no marker and its updraft\.db is not whole \(database disk image is malformed\)/, true);
    // a page damaged in place, the file whole: the devices table's cell pointers zeroed, which
    // PRAGMA quick_check reports (as rows, one line per cell) rather than failing on
    const damaged = Buffer.from(db);
    const mem = new Database(db);
    const pageSize = mem.pragma('page_size', { simple: true }) as number;
    const root = (mem.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'devices'").get() as { rootpage: number }).rootpage;
    mem.close();
    const page = (root - 1) * pageSize;
    assert.ok(root > 1 && [0x0a, 0x0d].includes(damaged[page]!), 'a leaf page, not the first');
    damaged.fill(0, page + 8, page + 8 + 2 * damaged.readUInt16BE(page + 3));
    await writeFile(path.join(backup, 'updraft.db'), damaged);
    await refused(/has no marker and its updraft\.db is not whole \(Tree \d+ page \d+ cell 0: Offset 0 out of range [\d.]+(; [^;)]+){0,2}\): restore another backup$/m, true);
    // a server with --db's: no database, and no build bytes
    await unlink(path.join(backup, 'updraft.db'));
    await refused(/has no marker and no updraft\.db: a backup of a server with --db made before 2026-12-04, which holds none of its builds' bytes/);
    await writeFile(path.join(backup, 'updraft.db'), db);

    const r = await runCli(['restore', backup, '--data-dir', target, '--unmarked']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `updraft restore: checking the database (${(db.length / 1e6).toFixed(1)} MB)...\n`);
    const restored = await serve(target);
    running.push(restored.proc);
    assert.deepEqual(await deviceIds(restored), ['dev-old']);
    const dl = await fetch(`${restored.url}/api/v1/artifacts`, { headers: { authorization: `Bearer ${restored.token}` } });
    assert.deepEqual(((await dl.json()) as { items: { sha256: string }[] }).items.map((a) => a.sha256), [sha]);
    await restored.proc.kill('SIGTERM');
  });
});
