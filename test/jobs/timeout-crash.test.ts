/**
 * A process killed between a timeout's TIMED_OUT and the retract of its command: the next
 * process takes the command back (and queues the retry) exactly as the timeout would have,
 * so a device coming back does not install a build its records say timed out. The crash is
 * real: a child process on the SQLite store kills itself as the TIMED_OUT is committed
 * (support/crash-at-timeout.ts); the fixture then opens the same store, as a restarted server.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { JsonObject } from '../../src/protocol/json.ts';
import { assertStayThenRetry, startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Runs the child to its crash; resolves with the job and device it made. */
async function crashAtTimeout(dir: string, retries: number, at: 'timed-out' | 'retract'): Promise<{ jobId: string; deviceId: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(here, 'support', 'crash-at-timeout.ts'), dir, String(retries), at], { stdio: 'inherit', cwd: path.resolve(here, '..', '..') });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  assert.deepEqual([code, signal], [null, 'SIGKILL'], `the child died at the ${at}, as a killed server`);
  return JSON.parse(await readFile(path.join(dir, 'crash.json'), 'utf8')) as { jobId: string; deviceId: string };
}

describe('a crash between a timeout and the retract of its command', () => {
  let f: RolloutFixture | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    if (f) await f.close();
    else if (dir) await rm(dir, { recursive: true, force: true });
    f = undefined;
    dir = undefined;
  });

  /** The crash, then the restart on the same store at the crash's time. */
  const restartAfterCrash = async (retries: number) => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-timeout-crash-'));
    const { jobId, deviceId } = await crashAtTimeout(dir, retries, 'timed-out');
    f = await startRolloutFixture({ dir });
    f.advance(61_000);
    const e = await f.execution(jobId, deviceId);
    assert.deepEqual([e.status, e.attempt], ['TIMED_OUT', undefined], 'the crash came after the TIMED_OUT, before a retry');
    assert.equal((await f.desired(deviceId))?.jobId, jobId, 'and before the retract: the device is still asked for the build');
    return { f, jobId, d: deviceId };
  };

  it('the next tick takes the command back; the device coming back stays on what it runs', async () => {
    const { f, jobId, d } = await restartAfterCrash(0);
    await f.tick();
    const stay = await f.desired(d);
    assert.deepEqual([stay?.jobId, stay?.version], [`${jobId}.cancel`, '1.0.0'], 'told to stay, as the timeout would have');
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.dueAt], ['TIMED_OUT', undefined], 'nothing due any more');
    // done once: a later tick writes nothing
    const version = (await f.store.getShadow(d, ''))?.version;
    f.advance(1000);
    await f.tick();
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written again');
    // the device comes back and runs what it is asked: the stay, not the timed-out build
    await f.complete(d, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(d, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
    const after = await f.execution(jobId, d);
    assert.deepEqual([after.status, after.details.lateSuccess], ['TIMED_OUT', undefined], 'no late success: the build was never installed');
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });

  it('with a retry allowed: the command is taken back and the retry queued, then sent when the job goes on', async () => {
    const { f, jobId, d } = await restartAfterCrash(1);
    await f.tick();
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt, e.dueAt], ['QUEUED', 2, undefined, undefined], 'the retry is queued, not sent');
    assert.equal((e.details.attempts as JsonObject[])[0]?.status, 'TIMED_OUT');
    await assertStayThenRetry(f, jobId, d, 'told to stay while the retry waits for the paused job');
  });

  it("crashed after the retract, before the retry: the device's answer to the stay stays with the attempt that timed out", async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-timeout-crash-'));
    const { jobId, deviceId: d } = await crashAtTimeout(dir, 1, 'retract');
    f = await startRolloutFixture({ dir });
    f.advance(61_000);
    assert.equal((await f.desired(d))?.jobId, `${jobId}.cancel`, 'the crash came after the stay');
    // the device answers the stay before the restarted engine's first tick
    await f.complete(d, 'SUCCESS', '1.0.0');
    assert.equal((await f.execution(jobId, d)).status, 'TIMED_OUT', 'no retry yet');
    await f.tick(); // finishes the timeout: the stay stands, the retry is queued
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.details.control], ['QUEUED', 2, undefined], 'the retry has had no control command');
    const [first] = e.details.attempts as JsonObject[];
    assert.deepEqual([first?.attempt, first?.status, first?.control], [1, 'TIMED_OUT', { jobId: `${jobId}.cancel`, status: 'SUCCESS', version: '1.0.0', at: f.clock.now }]);
  });
});
