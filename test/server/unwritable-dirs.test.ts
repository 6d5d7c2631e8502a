/**
 * A data directory, or its artifacts/, that the server's user cannot write: the server
 * refuses to start in one line naming the directory and what is wrong, and an upload that
 * the disk refuses once running answers a 500 that names no path (the log names it). Tests
 * run as root, whom modes do not stop: the server runs as `nobody` (spawn's uid), in
 * directories that root owns; when not root, modes alone do it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/updraft.js');
const LOCAL = ['--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '-1'];
const ROOT = process.getuid?.() === 0;
const NOBODY = { uid: 65534, gid: 65534 };
/** How the server is run: as nobody when the tests run as root. */
const AS = ROOT ? NOBODY : {};

/** Why the tests cannot run here (nobody cannot read this checkout), or undefined. */
function cannotRun(): string | undefined {
  if (!ROOT) return undefined;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', 'import("' + path.resolve(path.dirname(BIN), '../src/util/writable-dir.ts') + '")'], { ...AS, cwd: path.resolve(path.dirname(BIN), '..'), encoding: 'utf8' });
  return r.status === 0 ? undefined : `the user nobody cannot run this checkout (${(r.stderr || r.error?.message || '').split('\n')[0]})`;
}
const skip = cannotRun();

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A data directory the server's user owns. */
async function dataDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-unwritable-'));
  dirs.push(dir);
  if (ROOT) await chown(dir, NOBODY.uid, NOBODY.gid);
  return dir;
}

/** Makes `dir` (created when missing) one that the server's user cannot write. */
async function unwritable(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  if (ROOT) await chown(dir, 0, 0);
  await chmod(dir, 0o555);
}

/** A server process, its output so far, and its exit. */
function startServer(dir: string) {
  const child = spawn(process.execPath, [BIN, 'server', '--data-dir', dir, ...LOCAL], { ...AS, cwd: os.tmpdir(), env: { ...process.env, UPDRAFT_TOKEN: '' } });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  let code: number | null | undefined;
  void exited.then((c) => (code = c));
  const waitFor = async (re: RegExp): Promise<RegExpMatchArray> => {
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      const m = out.match(re);
      if (m) return m;
      if (code !== undefined) throw new Error(`exited (${code}) before ${re}:\n${out}`);
    }
    throw new Error(`no ${re} within 60 s:\n${out}`);
  };
  /** Its exit code when it exits before serving; 'started' (and stopped) when it serves. */
  const exitCode = async (): Promise<number | null | 'started'> => {
    const started = await waitFor(/HTTP API and downloads on/).then(() => true, () => false);
    if (started) child.kill('SIGTERM');
    const c = await exited;
    return started ? 'started' : c;
  };
  return { child, output: () => out, exited, waitFor, exitCode };
}

/** The server's last line, once it exits before serving with `code` (2: a path that cannot be a directory, a bad setting). */
async function refusal(dir: string, code = 1): Promise<string> {
  const server = startServer(dir);
  assert.equal(await server.exitCode(), code, server.output());
  return server.output().trim().split('\n').at(-1)!;
}

/** `p` as a pattern. */
const re = (p: string) => p.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('directories the server cannot write', { skip }, () => {
  it('a data directory not writable: refused at start, one line naming it', async () => {
    const dir = await dataDir();
    await unwritable(dir);
    assert.match(await refusal(dir), new RegExp(`^updraft: error: the data directory ${re(dir)} is not writable by this process's user \\(${ROOT ? 'nobody' : '.+'}\\): permission denied; give the server's user write access to it, or choose another with --data-dir$`));
  });

  it('its pki/ not writable (the CA not made yet): refused at start, one line naming it', async () => {
    const dir = await dataDir();
    await unwritable(path.join(dir, 'pki'));
    assert.match(await refusal(dir), new RegExp(`^updraft: error: the pki/ directory ${re(path.join(dir, 'pki'))} is not writable by this process's user .*: permission denied; give the server's user`));
  });

  it("files another user left in the data directory (the token, the database, a key): refused at start, one line naming the file, its owner and mode", async () => {
    // as after `sudo updraft server` once: root's files, 0600 / 0644, in the service user's directory
    const owner = ROOT ? 'uid 0' : 'uid \\d+';
    const token = await dataDir();
    await writeFile(path.join(token, 'operator-token'), `updr_${'x'.repeat(32)}\n`, { mode: 0o600 });
    if (!ROOT) await chmod(path.join(token, 'operator-token'), 0o200);
    assert.match(await refusal(token), new RegExp(`^updraft: error: the file ${re(path.join(token, 'operator-token'))} is not readable by this process's user \\(${ROOT ? 'nobody' : '.+'}\\): owned by ${owner}, mode 0[26]00; give the server's user access to it \\(chown it to that user\\), or choose another --data-dir$`));

    const db = await dataDir();
    await writeFile(path.join(db, 'updraft.db'), '', { mode: 0o644 });
    if (!ROOT) await chmod(path.join(db, 'updraft.db'), 0o444);
    assert.match(await refusal(db), new RegExp(`^updraft: error: the file ${re(path.join(db, 'updraft.db'))} is not readable and writable by this process's user .*: owned by ${owner}, mode 0[46]44; give the server's user access`));

    const key = await dataDir();
    await mkdir(path.join(key, 'keys'));
    if (ROOT) await chown(path.join(key, 'keys'), NOBODY.uid, NOBODY.gid);
    await writeFile(path.join(key, 'keys', 'software-signing.key'), 'secret', { mode: 0o600 });
    if (!ROOT) await chmod(path.join(key, 'keys', 'software-signing.key'), 0o200);
    assert.match(await refusal(key), new RegExp(`^updraft: error: the file ${re(path.join(key, 'keys', 'software-signing.key'))} is not readable by this process's user .*: owned by ${owner}, mode 0[26]00; give the server's user access`));

    // a file of the operator's own there, which the server never opens (an offline root key), is not its to read
    const own = await dataDir();
    await mkdir(path.join(own, 'keys'));
    if (ROOT) await chown(path.join(own, 'keys'), NOBODY.uid, NOBODY.gid);
    await writeFile(path.join(own, 'keys', 'root.key'), 'secret', { mode: 0o600 });
    if (!ROOT) await chmod(path.join(own, 'keys', 'root.key'), 0o200);
    assert.equal(await startServer(own).exitCode(), 'started');
  });

  it('a file where the data directory should be: refused, saying so', async () => {
    const dir = await dataDir();
    await writeFile(path.join(dir, 'data'), 'not a directory');
    assert.equal(await refusal(path.join(dir, 'data'), 2), `updraft: error: the data directory ${path.join(dir, 'data')} is a file, not a directory; give the server's user write access to it, or choose another with --data-dir`);
  });

  it('artifacts/ not writable (left by an earlier start): refused at start, one line naming it', async () => {
    const dir = await dataDir();
    for (const sub of ['artifacts/tmp', 'artifacts/sha256', 'artifacts']) await unwritable(path.join(dir, sub));
    const server = startServer(dir);
    assert.equal(await server.exitCode(), 1, server.output());
    const last = server.output().trim().split('\n').at(-1)!;
    assert.match(last, new RegExp(`^updraft: error: the artifact directory ${path.join(dir, 'artifacts').replaceAll('/', '\\/')} is not writable by this process's user \\(${ROOT ? 'nobody' : '.+'}\\): permission denied; give the server's user write access to it`));
  });

  it('an upload the disk refuses: a 500 naming no path, the log names it', async () => {
    const dir = await dataDir();
    const server = startServer(dir);
    try {
      const url = (await server.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
      await server.waitFor(/updraft: data in/);
      await unwritable(path.join(dir, 'artifacts', 'tmp'));
      const token = (await readFile(path.join(dir, 'operator-token'), 'utf8')).trim();
      const res = await fetch(`${url}/api/v1/artifacts?name=fw&version=1.0.0`, { method: 'POST', headers: { authorization: `Bearer ${token}` }, body: 'firmware bytes' });
      const body = await res.text();
      assert.equal(res.status, 500, body);
      assert.match(body, /the artifact could not be stored: the artifact directory is not writable by this process's user .*permission denied/);
      assert.ok(!body.includes(dir), `the answer names the data directory: ${body}`);
      assert.match(server.output(), new RegExp(`an artifact could not be written.*${path.join(dir, 'artifacts', 'tmp').replaceAll('/', '\\/')}`));
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });

  it('artifacts/ made unwritable while running: /readyz answers 503 unwritable, and ready again once it is writable', async () => {
    const dir = await dataDir();
    const server = startServer(dir);
    try {
      const url = (await server.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
      await server.waitFor(/updraft: data in/);
      const readyz = async () => {
        const res = await fetch(`${url}/readyz`);
        return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string> } };
      };
      /** Polls /readyz until its artifacts check says `state` (the write check is redone every 5 s). */
      const until = async (state: string) => {
        let last: Awaited<ReturnType<typeof readyz>> | undefined;
        for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
          last = await readyz();
          if (last.body.checks.artifacts === state) return last;
        }
        throw new Error(`/readyz never said artifacts ${state}: ${JSON.stringify(last)}\n${server.output()}`);
      };
      assert.deepEqual(await until('ok'), { status: 200, body: { status: 'ready', checks: { store: 'ok', artifacts: 'ok', broker: 'ok', instance: 'ok' } } });
      await unwritable(path.join(dir, 'artifacts', 'tmp'));
      assert.deepEqual(await until('unwritable'), { status: 503, body: { status: 'not ready', checks: { store: 'ok', artifacts: 'unwritable', broker: 'ok', instance: 'ok' } } });
      // the log says why, once
      await server.waitFor(/not ready .*artifacts=unwritable .*artifactsError="the artifact directory is not writable by this process's user .*permission denied"/);
      if (ROOT) await chown(path.join(dir, 'artifacts', 'tmp'), NOBODY.uid, NOBODY.gid);
      await chmod(path.join(dir, 'artifacts', 'tmp'), 0o700);
      assert.equal((await until('ok')).status, 200);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
