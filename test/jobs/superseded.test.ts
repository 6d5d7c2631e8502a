/**
 * A device asked for a second job's build before it reported an outcome of the first (two
 * deploys while it was offline) will never run the first: that execution ends CANCELED,
 * superseded, so the first job finishes and its build can be deleted. Real server, real agent.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('a job superseded on a device before it finished there', () => {
  let ts: TestServer;
  let dir: string;
  const api = async <T>(method: string, route: string): Promise<{ status: number; body: T }> => {
    const res = await fetch(`${ts.httpUrl}/api/v1${route}`, { method, headers: { authorization: `Bearer ${ts.token}` } });
    return { status: res.status, body: (await res.json()) as T };
  };
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-superseded-'));
    ts = await startTestServer();
    await addArtifact(ts, '6.0.0', Buffer.from('fw 6.0.0 '.repeat(500)));
    await addArtifact(ts, '7.0.0', Buffer.from('fw 7.0.0 '.repeat(500)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('ends CANCELED with the reason; the first job finishes, its build can go, and the device runs the second', async () => {
    const password = await registerDevice(ts, 'off-1');
    const first = await deploy(ts, ['off-1'], 'fw@6.0.0');
    const second = await deploy(ts, ['off-1'], 'fw@7.0.0');
    type Exec = { deviceId: string; status: string; details: { error?: string } };
    const superseded = await eventually(async () => {
      const e = (await api<{ executions: Exec[] }>('GET', `/jobs/${first}`)).body.executions.find((x) => x.deviceId === 'off-1');
      return e?.status === 'CANCELED' ? e : undefined;
    }, 10_000, 'the first execution superseded');
    assert.equal(superseded.details.error, `superseded: the device was asked for job ${second} before it finished this one`);
    await eventually(async () => ((await api<{ job: { status: string } }>('GET', `/jobs/${first}`)).body.job.status === 'COMPLETED' ? true : undefined), 15_000, 'the first job finished');
    assert.equal((await api('DELETE', '/artifacts/fw/6.0.0')).status, 200, 'its build can be deleted');
    // the second job is untouched, and the device, once it comes, runs it
    const { finished, agent } = await startAgent(ts, dir, 'off-1', { username: 'off-1', password });
    try {
      assert.equal((await outcome(finished, second)).status, 'SUCCESS');
      assert.ok(!finished.some((e) => e.jobId === first), 'the first job never ran there');
      const again = (await api<{ executions: Exec[] }>('GET', `/jobs/${first}`)).body.executions.find((x) => x.deviceId === 'off-1');
      assert.equal(again?.status, 'CANCELED');
    } finally {
      await agent.stop();
    }
  });

  it('leaves alone a job the device finished, and the attempts of one job', async () => {
    const password = await registerDevice(ts, 'done-1');
    const { finished, agent } = await startAgent(ts, dir, 'done-1', { username: 'done-1', password });
    try {
      const first = await deploy(ts, ['done-1'], 'fw@7.0.0');
      assert.equal((await outcome(finished, first)).status, 'SUCCESS');
      await addArtifact(ts, '8.0.0', Buffer.from('fw 8.0.0 '.repeat(500)));
      const second = await deploy(ts, ['done-1'], 'fw@8.0.0');
      assert.equal((await outcome(finished, second)).status, 'SUCCESS');
      type Exec = { deviceId: string; status: string };
      assert.equal((await api<{ executions: Exec[] }>('GET', `/jobs/${first}`)).body.executions[0]?.status, 'SUCCEEDED', 'a finished execution stays as it ended');
    } finally {
      await agent.stop();
    }
  });
});
