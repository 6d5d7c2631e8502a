/**
 * A device reinstated after a revocation is taken back by the rollouts still running that
 * skipped it while it was revoked (jobs/retry-policy.ts, requeueReinstated): a real server,
 * the real CLI and a real agent.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, startAgent } from '../security/support.ts';

describe('reinstating a device', () => {
  let ts: TestServer;
  let root: string;
  let agent: UpdateAgent | undefined;

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-reinstate-'));
    await addArtifact(ts, '2.0.0', randomBytes(3000));
  });
  after(async () => {
    await agent?.stop();
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
  const api = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as T;
  };
  const executionOf = async (jobId: string, deviceId: string) => (await api<{ executions: ExecutionRecord[] }>('GET', `/api/v1/jobs/${jobId}`)).executions.find((e) => e.deviceId === deviceId)!;
  const removed = (jobId: string) => eventually(async () => ((await executionOf(jobId, 'r-1')).status === 'REMOVED' ? true : undefined), 30_000, `r-1 skipped by ${jobId}`);

  it('queues it again in the running rollouts that skipped it while revoked, not in the stopped ones; it then updates', async () => {
    const secret = await registerDevice(ts, 'r-1');
    // never connect: keep the jobs running (one each: a device asked for one job's build and then
    // another's would end the first one's execution, superseded)
    await registerDevice(ts, 'r-never-1');
    await registerDevice(ts, 'r-never-2');
    // rollouts that start in a moment; the device is revoked before they send it anything
    const startAt = Date.now() + 3000;
    const create = async (other: string) => (await api<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['r-1', other] }, plan: { startAt } })).job.jobId;
    const running = await create('r-never-1');
    const stopped = await create('r-never-2');
    await api('POST', '/api/v1/devices/r-1/revoke');
    await removed(running);
    await removed(stopped);
    assert.equal((await executionOf(running, 'r-1')).details.error, 'the device was revoked');
    await api('POST', `/api/v1/jobs/${stopped}/cancel`);

    const reinstated = await cli('device', 'reinstate', 'r-1');
    assert.equal(reinstated.code, 0, reinstated.stderr);
    assert.equal(reinstated.stdout.trim(), `reinstated r-1\n  queued again in the running job(s) that skipped it while it was revoked: ${running}`);
    assert.equal((await executionOf(stopped, 'r-1')).status, 'REMOVED', 'a stopped rollout stays as it ended');

    // the device comes back and takes the update, as the job's second attempt
    agent = (await startAgent(ts, root, 'r-1', { username: 'r-1', password: secret })).agent;
    const done = await eventually(async () => {
      const e = await executionOf(running, 'r-1');
      return e.status === 'SUCCEEDED' ? e : undefined;
    }, 30_000, 'r-1 updated');
    assert.equal(done.attempt, 2);
    assert.deepEqual((done.details.attempts as { status: string; error: string }[]).map((a) => [a.status, a.error]), [['REMOVED', 'the device was revoked']]);

    // reinstated again with nothing skipped: nothing queued
    const again = await cli('device', 'reinstate', 'r-1', '--json');
    assert.deepEqual((JSON.parse(again.stdout) as { jobsRequeued: string[] }).jobsRequeued, []);
  });

  it('says so when the device was not revoked, and leaves its record as it was', async () => {
    await registerDevice(ts, 'r-fine');
    const before = (await api<{ device: { version: number } }>('GET', '/api/v1/devices/r-fine')).device;
    const r = await cli('device', 'reinstate', 'r-fine');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'r-fine was not revoked: nothing to lift');
    const json = JSON.parse((await cli('device', 'reinstate', 'r-fine', '--json')).stdout) as { wasRevoked: boolean };
    assert.equal(json.wasRevoked, false);
    assert.equal((await api<{ device: { version: number } }>('GET', '/api/v1/devices/r-fine')).device.version, before.version, 'no new version written');
  });
});
