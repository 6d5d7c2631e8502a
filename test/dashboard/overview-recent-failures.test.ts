/**
 * The overview's failing devices are the fleet's newest failures, asked of a real server over
 * HTTP: an older job with more than 20 failed devices, the latest of them on the ids that sort
 * last, and a newer failure in another job. Until 2026-12-07 the overview read each recent
 * job's first 20 failures by device id: the older job's newest failures were missing and its
 * oldest shown.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('dashboard overview: the newest failures across jobs', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts?.close();
  });

  /** Executions of `jobId` by device id. */
  const executions = async (jobId: string) => {
    const r = await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}/executions?limit=100`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return new Map((r.body.items as { deviceId: string; status: string; dispatchedAt?: number; updatedAt: number }[]).map((e) => [e.deviceId, e]));
  };

  /**
   * A job of `artifact` on `devices`, its commands sent, then each device's failure reported in
   * the order given, each recorded before the next is sent (so each is later than the one before).
   */
  const failJob = async (artifact: string, devices: string[], description: string) => {
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact, description, targets: { devices } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await eventually(async () => ([...(await executions(jobId)).values()].every((e) => e.dispatchedAt !== undefined) ? true : undefined), 30_000, 'every command sent');
    const op = await TestClient.connect(ts.mqttUrl, `ops-${randomBytes(4).toString('hex')}`, { username: 'operator', password: ts.token });
    try {
      for (const d of devices) {
        await op.publish(`state/${d}/update`, { state: { reported: { software: { name: 'rf', version: '0.9.0', jobId, status: 'FAILURE', error: `${d} failed` } } } });
        await eventually(async () => ((await executions(jobId)).get(d)?.status === 'FAILED' ? true : undefined), 30_000, `${d}'s failure recorded`);
        await delay(2); // the next one recorded in a later millisecond
      }
    } finally {
      await op.end();
    }
    return jobId;
  };

  it('lists a newer failure in another job first, then the older job\'s newest failures, not its first 20 by device id', async () => {
    await addArtifact(ts, '1.0.0', randomBytes(128), 'rf');
    const many = Array.from({ length: 25 }, (_, i) => `rf-${String(i).padStart(2, '0')}`);
    const r = await apiJson(ts, 'POST', '/api/v1/devices/bulk', { devices: [...many, 'rf-newer'].map((deviceId) => ({ deviceId })) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const older = await failJob('rf@1.0.0', many, 'older');
    const newer = await failJob('rf@1.0.0', ['rf-newer'], 'newer');
    // the overview is cached for 2 s: asked until it holds the newer job's failure
    const failing = await eventually(async () => {
      const rows = (await apiJson(ts, 'GET', '/api/v1/fleet/overview')).body.failing as { deviceId: string; jobId: string }[];
      return rows.some((row) => row.jobId === newer) ? rows : undefined;
    }, 30_000, 'the overview computed after the newer job');
    assert.deepEqual(failing[0], { ...failing[0], deviceId: 'rf-newer', jobId: newer }, 'the newest failure first');
    // then the older job's 19 newest failures: rf-24 (reported last) down to rf-06
    const expected = Array.from({ length: 19 }, (_, i) => `rf-${String(24 - i).padStart(2, '0')}`);
    assert.deepEqual(failing.slice(1).map((row) => `${row.deviceId}@${row.jobId === older ? 'older' : row.jobId}`), expected.map((d) => `${d}@older`), 'the older job\'s newest failures, newest first; until 2026-12-07 rf-19 down to rf-01');
    assert.equal(failing.length, 20, 'at most 20 rows');
  });
});
