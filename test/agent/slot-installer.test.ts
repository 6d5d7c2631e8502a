/** The slot installer on a real temporary directory: atomic switch, health check, rollback, recovery. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { lstat, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile, mkdir, symlink, rename } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { UpdraftError } from '../../src/errors.ts';
import { SlotInstaller, type SlotInstallerOptions } from '../../src/agent/slot-installer.ts';
import type { DesiredSoftware } from '../../src/protocol/software.ts';
import { sha256 } from './support/artifact-server.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Processes of group `pgid` that still run (a killed orphan may stay a zombie where nothing reaps it). */
async function liveMembers(pgid: number): Promise<number> {
  let count = 0;
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z') count++;
  }
  return count;
}

describe('SlotInstaller', () => {
  let root: string;
  let dir: string;
  const artifacts: Record<string, { file: string; sw: DesiredSoftware }> = {};

  beforeEach(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-slots-'));
    dir = path.join(root, 'install');
    await mkdir(dir);
    for (const version of ['1.0.0', '2.0.0', '3.0.0']) {
      const data = Buffer.from(`#!/bin/sh\necho firmware ${version}\n`);
      const file = path.join(root, `fw-${version}.bin`);
      await writeFile(file, data);
      artifacts[version] = { file, sw: { name: 'fw', version, sha256: sha256(data), size: data.length, jobId: `job-${version}` } };
    }
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const make = (o: Partial<SlotInstallerOptions> = {}) => new SlotInstaller({ dir, ...o });
  const install = (i: SlotInstaller, v: string) => i.install(artifacts[v]!.file, artifacts[v]!.sw, {});
  const link = () => readlink(path.join(dir, 'current'));

  it('reports nothing, or the initial version, on a fresh directory', async () => {
    assert.equal(await make().current(), undefined);
    assert.deepEqual(await make({ initialVersion: '1.0.0', initialName: 'fw' }).current(), { name: 'fw', version: '1.0.0' });
  });

  it('installs into the other slot and switches current atomically', async () => {
    const i = make();
    await install(i, '1.0.0');
    assert.equal(await link(), path.join('slots', 'a'));
    await install(i, '2.0.0');
    assert.equal(await link(), path.join('slots', 'b'));
    assert.ok((await lstat(path.join(dir, 'current'))).isSymbolicLink());
    const { sw } = artifacts['2.0.0']!;
    assert.deepEqual(await i.current(), { name: 'fw', version: '2.0.0', sha256: sw.sha256, size: sw.size });
    assert.deepEqual(await readFile(path.join(dir, 'current', 'artifact')), await readFile(artifacts['2.0.0']!.file));
    const manifest = JSON.parse(await readFile(path.join(dir, 'slots', 'b', 'manifest.json'), 'utf8'));
    assert.equal(manifest.version, '2.0.0');
    assert.equal(manifest.sha256, sw.sha256);
    assert.ok(!Number.isNaN(Date.parse(manifest.installedAt)));
    // no temporary symlink or file left behind
    assert.deepEqual((await readdir(dir)).sort(), ['current', 'slots']);
    // the old slot is intact for a rollback; the third install reuses it
    await install(i, '3.0.0');
    assert.equal(await link(), path.join('slots', 'a'));
  });

  it('refuses a file that is not the build it is told to install: nothing written, nothing switched', async () => {
    const i = make();
    await install(i, '1.0.0');
    const { sw } = artifacts['2.0.0']!;
    // changed after the agent verified it (same size, one byte differs)
    const changed = Buffer.from(await readFile(artifacts['2.0.0']!.file));
    changed[3]! ^= 0xff;
    const file = path.join(root, 'changed.bin');
    await writeFile(file, changed);
    await assert.rejects(i.install(file, sw, {}), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'INTEGRITY');
      assert.equal(err.message, `the file to install is not the verified build: sha256 ${sha256(changed)}, expected ${sw.sha256}; nothing installed`);
      return true;
    });
    assert.equal(await link(), path.join('slots', 'a'));
    assert.equal(await stat(path.join(dir, 'slots', 'b')).then(() => true, () => false), false, 'the half-made slot is removed');
    assert.equal((await i.current())?.version, '1.0.0');
    // longer than announced: refused too
    await writeFile(file, Buffer.concat([await readFile(artifacts['2.0.0']!.file), Buffer.from('x')]));
    await assert.rejects(i.install(file, sw, {}), (err: unknown) => err instanceof UpdraftError && err.message === `the file to install is not the verified build: more than the ${sw.size} bytes announced; nothing installed`);
    assert.equal(await link(), path.join('slots', 'a'));
  });

  it('keeps the new slot when the health check passes, with the slot and version in its env', async () => {
    const i = make({ healthCheck: 'test "$UPDRAFT_VERSION" = 2.0.0 && test -x "$UPDRAFT_SLOT/artifact" && "$UPDRAFT_SLOT/artifact" | grep -q "firmware 2.0.0"' });
    await install(i, '1.0.0').catch(() => {}); // its check fails (version 1.0.0): nothing runs
    assert.equal(await i.current(), undefined);
    await install(i, '2.0.0');
    assert.equal((await i.current())?.version, '2.0.0');
  });

  it('rolls back and throws HEALTH_CHECK with exit code and last stderr line when the check fails', async () => {
    const ok = make();
    await install(ok, '1.0.0');
    const i = make({ healthCheck: 'echo starting >&2; echo "boom: port 8080 closed" >&2; exit 3' });
    await assert.rejects(install(i, '2.0.0'), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'HEALTH_CHECK');
      assert.equal(err.message, 'health check failed: exit code 3: boom: port 8080 closed');
      return true;
    });
    assert.equal(await link(), path.join('slots', 'a'));
    assert.equal((await i.current())?.version, '1.0.0');
  });

  it('fails a health check that hangs past its timeout and rolls back', async () => {
    await install(make(), '1.0.0');
    const i = make({ healthCheck: 'sleep 30', healthCheckTimeoutMs: 100 });
    await assert.rejects(install(i, '2.0.0'), (err: unknown) => err instanceof UpdraftError && err.code === 'HEALTH_CHECK' && /timed out after 100 ms/.test(err.message));
    assert.equal((await i.current())?.version, '1.0.0');
  });

  it('removes current again when the very first install fails its check', async () => {
    const i = make({ healthCheck: 'exit 1', initialVersion: '0.9.0' });
    await assert.rejects(install(i, '1.0.0'));
    assert.equal((await i.current())?.version, '0.9.0');
  });

  it('recovers after a real crash during the health check: finishes the install', async () => {
    await install(make(), '1.0.0');
    const marker = path.join(root, 'hc.pid');
    const { file, sw } = artifacts['2.0.0']!;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'support', 'crash-install.ts'), dir, file, sw.version, sw.sha256, String(sw.size), marker], { stdio: 'inherit', cwd: path.resolve(here, '..', '..') });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    // hang guard: the test runner's timeout
    while (!(await stat(marker).then((s) => s.size > 0, () => false))) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    process.kill(-Number((await readFile(marker, 'utf8')).trim()), 'SIGKILL');
    // the crash left current on the new slot, unchecked
    assert.equal(await link(), path.join('slots', 'b'));
    const result = await make({ healthCheck: 'test "$UPDRAFT_VERSION" = 2.0.0' }).recover(sw, {});
    assert.deepEqual(result, { outcome: 'installed' });
    assert.equal((await make().current())?.version, '2.0.0');
  });

  it('kills the health check a crash left running before it checks again', async () => {
    await install(make(), '1.0.0');
    const marker = path.join(root, 'hc.pid');
    const { file, sw } = artifacts['2.0.0']!;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'support', 'crash-install.ts'), dir, file, sw.version, sw.sha256, String(sw.size), marker], { stdio: 'inherit', cwd: path.resolve(here, '..', '..') });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    // the check has started (its marker) and the agent has recorded it: the record is written
    // after the spawn, so a crash between the two leaves nothing to go by (under load the
    // marker came first and the kill fell there: CI saw the check survive the restart)
    const recorded = () => readFile(path.join(dir, '.health-check.json'), 'utf8').then((t) => typeof (JSON.parse(t) as { pgid?: unknown }).pgid === 'number', () => false);
    while (!(await stat(marker).then((s) => s.size > 0, () => false)) || !(await recorded())) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    // the agent is gone; its check (its own process group) runs on
    const pgid = Number((await readFile(marker, 'utf8')).trim());
    try {
      assert.ok((await liveMembers(pgid)) > 0, 'the check outlived the agent');
      // the restarted agent's check passes only when no process of the old one runs beside it
      const alone = `! grep -Eqs '^[0-9]+ \\([^)]*\\) [^Z] [0-9]+ ${pgid} ' /proc/[0-9]*/stat`;
      const result = await make({ healthCheck: alone }).recover(sw, {});
      assert.deepEqual(result, { outcome: 'installed' });
      assert.equal(await liveMembers(pgid), 0, 'the old check was killed');
      assert.deepEqual(await readdir(dir).then((names) => names.filter((n) => n.startsWith('.'))), [], 'no record of a check left');
    } finally {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // killed already
      }
    }
  });

  it('recovers a crash after the slot was written but before the switch: switches and checks', async () => {
    const i = make();
    await install(i, '1.0.0');
    await install(i, '2.0.0');
    // as if the crash came just before the rename: current still on the old slot
    await symlink(path.join('slots', 'a'), path.join(dir, 'tmp-link'));
    await rename(path.join(dir, 'tmp-link'), path.join(dir, 'current'));
    assert.deepEqual(await make({ healthCheck: 'true' }).recover(artifacts['2.0.0']!.sw, {}), { outcome: 'installed' });
    assert.equal(await link(), path.join('slots', 'b'));
  });

  it('discards a half-written slot and reports not-started', async () => {
    const i = make();
    await install(i, '1.0.0');
    await mkdir(path.join(dir, 'slots', 'b'), { recursive: true });
    await writeFile(path.join(dir, 'slots', 'b', 'artifact'), 'half'); // no manifest: incomplete
    assert.deepEqual(await i.recover(artifacts['2.0.0']!.sw, {}), { outcome: 'not-started' });
    assert.equal(await stat(path.join(dir, 'slots', 'b')).then(() => true, () => false), false);
    assert.equal((await i.current())?.version, '1.0.0');
  });

  it('rolls back on recovery when the check now fails, and remembers the slot was rejected', async () => {
    await install(make(), '1.0.0');
    await install(make(), '2.0.0'); // switched to b, then "crashed" before the check finished
    const i = make({ healthCheck: 'echo "no network" >&2; exit 2' });
    const result = await i.recover(artifacts['2.0.0']!.sw, {});
    assert.equal(result.outcome, 'rolled-back');
    assert.match(result.reason ?? '', /exit code 2: no network/);
    assert.equal(await link(), path.join('slots', 'a'));
    // a second recovery (crash right after the rollback) does not try the rejected slot again
    assert.deepEqual(await make({ healthCheck: 'true' }).recover(artifacts['2.0.0']!.sw, {}), { outcome: 'rolled-back', reason: result.reason });
  });

  it("does not take another job's rejection of the same build for its own on recovery: the install runs again", async () => {
    await install(make(), '1.0.0');
    const { file, sw } = artifacts['2.0.0']!;
    await assert.rejects(make({ healthCheck: 'echo "sensor broken" >&2; exit 1' }).install(file, sw, {}), /sensor broken/);
    // the same build again as a new job, which crashed once its INSTALLING was saved, before it wrote the slot
    const retry = { ...sw, jobId: 'job-2.0.0-again' };
    const fixed = make({ healthCheck: 'true' });
    assert.deepEqual(await fixed.recover(retry, {}), { outcome: 'not-started' });
    assert.equal(await link(), path.join('slots', 'a'), 'nothing switched');
    await fixed.install(file, retry, {});
    assert.equal((await fixed.current())?.version, '2.0.0');
  });

  it('does not mark a slot rejected when the check was cut short by stop()', async () => {
    await install(make(), '1.0.0');
    const ctrl = new AbortController();
    const i = make({ healthCheck: 'sleep 30' });
    const p = i.install(artifacts['2.0.0']!.file, artifacts['2.0.0']!.sw, { signal: ctrl.signal });
    while ((await link()) !== path.join('slots', 'b')) await new Promise((r) => setTimeout(r, 5));
    ctrl.abort();
    await assert.rejects(p, (err: unknown) => err instanceof UpdraftError && err.code === 'HEALTH_CHECK');
    assert.equal(await link(), path.join('slots', 'a'));
    assert.deepEqual(await make({ healthCheck: 'true' }).recover(artifacts['2.0.0']!.sw, {}), { outcome: 'installed' });
  });
});
