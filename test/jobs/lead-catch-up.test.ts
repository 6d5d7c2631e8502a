/**
 * The rollout engine's catch-up when it takes the lead (recover, catchUp): it re-applies each
 * open execution's shadow report. One the execution holds already must write nothing: each
 * lease taken stamped `details.lastReportAt` and `updatedAt` of every open execution with that
 * moment (QA), which hid the executions IN_PROGRESS older than their builds' install time that
 * docs/deployment.md says to look for after a restore. One the execution did not get (a crash
 * between the shadow's commit and the execution's) is recorded with the time the shadow got it.
 *
 * Real parts: a server on SQLite, stopped and started again on its data dir (the in-process
 * lease taken at start), a raw MQTT device on its embedded broker.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { agentJobId } from '../../src/jobs/agent-job-id.ts';
import { answerTopic, requestTopic } from '../../src/protocol/topics.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

describe("the catch-up on a lead taken leaves the device's report times alone", () => {
  it('an execution whose report it holds is not written; one whose report only the shadow got takes the report time', async () => {
    let ts: TestServer | undefined = await startTestServer();
    const dataDir = ts.dataDir;
    const clients: TestClient[] = [];
    try {
      await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(300)));
      const devices = ['cu-1', 'cu-2'];
      for (const id of devices) {
        const c = await TestClient.connect(ts.mqttUrl, id, { username: id, password: await registerDevice(ts, id) });
        await c.subscribe(answerTopic({ deviceId: id, name: '' }, 'update', 'delta'), answerTopic({ deviceId: id, name: '' }, 'update', 'accepted'));
        clients.push(c);
      }
      const jobId = await deploy(ts, devices, 'fw@2.0.0');
      const rows = async (s: TestServer) => s.server.store.getExecutions(devices.map((deviceId) => ({ jobId, deviceId })));
      await eventually(async () => ((await rows(ts!)).every((e) => e?.dispatchedAt !== undefined) ? true : undefined), 30_000, 'both commands sent');
      // both report downloading: their executions IN_PROGRESS
      for (const [n, id] of devices.entries()) {
        await clients[n]!.publish(requestTopic({ deviceId: id, name: '' }, 'update'), { state: { reported: { software: { name: 'fw', version: '1.0.0', jobId: agentJobId(jobId), status: 'DOWNLOADING', progress: 0.5 } } } });
      }
      await eventually(async () => ((await rows(ts!)).every((e) => e?.status === 'IN_PROGRESS') ? true : undefined), 30_000, 'both IN_PROGRESS');
      await ts.server.tracker.idle();
      for (const c of clients.splice(0)) await c.client.endAsync();
      // cu-2's SUCCESS reached its shadow and not its execution (a crash between the two
      // commits), written to the store as the replica would, its metadata stamped 100 s ago
      const shadow = (await ts.server.store.getShadow('cu-2', ''))!;
      const at = Math.floor(Date.now() / 1000) - 100;
      const software = { name: 'fw', version: '2.0.0', jobId: agentJobId(jobId), status: 'SUCCESS' };
      const softwareMeta = Object.fromEntries(Object.keys(software).map((k) => [k, { timestamp: at }]));
      const reported = { ...shadow.state.reported, software };
      assert.equal(await ts.server.store.putShadow({ ...shadow, version: shadow.version + 1, state: { ...shadow.state, reported }, metadata: { ...shadow.metadata, reported: { ...shadow.metadata.reported, software: softwareMeta } }, timestamp: at }, shadow.version), true, "cu-2's shadow written");
      const [before] = await rows(ts);
      await ts.stop();
      ts = undefined;

      // started again: the lease taken, the catch-up run before start resolves (recover awaits the tracker)
      ts = await startTestServer({ dataDir });
      assert.equal(ts.server.rollouts.engine.isLeader, true, 'the started instance leads');
      await ts.server.tracker.idle();
      const [kept, caught] = await rows(ts);
      assert.equal(kept?.status, 'IN_PROGRESS');
      assert.deepEqual(
        { lastReportAt: kept?.details.lastReportAt, updatedAt: kept?.updatedAt, version: kept?.version },
        { lastReportAt: before?.details.lastReportAt, updatedAt: before?.updatedAt, version: before?.version },
        "cu-1's execution, whose report it held, not written by the lead taken",
      );
      assert.equal(caught?.status, 'SUCCEEDED', "cu-2's SUCCESS, which only its shadow had, recorded");
      assert.equal(caught?.details.lastReportAt, at * 1000, "cu-2's execution stamped with the time its shadow got the report");
    } finally {
      for (const c of clients) await c.client.endAsync().catch(() => undefined);
      await ts?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
