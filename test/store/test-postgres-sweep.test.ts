/**
 * The test PostgreSQL helper cleans up after a test process killed before its stop() (a
 * run cut by a timeout): such a process left its private server running and its
 * `updraft-pg-*` directory in /tmp. The next start sweeps them (sweepOrphans).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { alive, startTestPostgres, sweepOrphans, unavailable } from '../helpers/postgres.ts';

const HELPER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../helpers/postgres.ts');
const probe = await startTestPostgres();
const skip = probe.ok ? (process.env.UPDRAFT_TEST_POSTGRES_URL ? 'UPDRAFT_TEST_POSTGRES_URL: no private server to orphan' : undefined) : unavailable(probe, 'the test PostgreSQL sweep');
if (probe.ok) await probe.server.stop();

describe('the test PostgreSQL helper', { skip }, () => {
  it("stops the server and removes the directory of a test process killed before its stop(), and leaves a live process's", async () => {
    // a test process with a private server, killed (SIGKILL: no stop(), no exit handler)
    const code = `const { startTestPostgres } = await import(${JSON.stringify(HELPER)}); const r = await startTestPostgres(); if (!r.ok) { console.log('ERR ' + r.reason); process.exit(1); } console.log(JSON.stringify({ pid: r.server.pid, dataDir: r.server.dataDir })); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      child.on('exit', () => reject(new Error(`the test process exited: ${out}`)));
    });
    assert.doesNotMatch(line, /^ERR/);
    const { pid, dataDir } = JSON.parse(line) as { pid: number; dataDir: string };
    const dir = path.dirname(dataDir);

    // while its owner lives, a sweep (another test process starting) leaves it
    assert.deepEqual((await sweepOrphans()).filter((d) => d === dir), []);
    assert.ok(alive(pid) && existsSync(dataDir));

    const exited = new Promise((resolve) => child.on('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    assert.ok(alive(pid), 'the orphaned postmaster runs on');
    assert.ok(existsSync(dir), 'and its directory stays');

    // a pid file naming a process that is not that postmaster (one that died, its pid taken since): it is left alone
    const stranger = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    const tmp = await mkdtemp(path.join(os.tmpdir(), 'updraft-sweep-'));
    const stale = path.join(tmp, 'updraft-pg-stale');
    await mkdir(path.join(stale, 'data'), { recursive: true });
    await writeFile(path.join(stale, 'owner.pid'), '999999999');
    await writeFile(path.join(stale, 'data', 'postmaster.pid'), `${stranger.pid}\n${path.join(stale, 'data')}\n`);
    try {
      assert.deepEqual(await sweepOrphans(tmp), [stale], 'the directory is removed');
      assert.ok(alive(stranger.pid!), 'the process its pid file names now is not signalled');
    } finally {
      stranger.kill('SIGKILL');
      await rm(tmp, { recursive: true, force: true });
    }

    assert.ok((await sweepOrphans()).includes(dir), 'swept');
    assert.equal(existsSync(dir), false, 'the directory is gone');
    assert.equal(alive(pid), false, 'the postmaster is stopped');
  });
});
