/**
 * The rollout engine's catch-up when it takes the lead (recover, catchUp): it re-applies each
 * open execution's shadow report. One the execution holds already must write nothing: each
 * lease taken stamped `details.lastReportAt` and `updatedAt` of every open execution with that
 * moment (QA), which hid the executions IN_PROGRESS older than their builds' install time that
 * docs/deployment.md says to look for after a restore. One the execution did not get (a crash
 * between the shadow's commit and the execution's) is recorded with the time the shadow got it
 * as its `lastReportAt`; its step timer starts when the report is recorded (review: the
 * shadow's time comes from its instance's clock, and one behind put the phase start before the
 * command was sent, the execution timed out at the new leader's first tick).
 *
 * Real parts: a server on SQLite, stopped and started again on its data dir (the in-process
 * lease taken at start), raw MQTT devices on its embedded broker.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { agentJobId } from '../../src/jobs/agent-job-id.ts';
import { answerTopic, requestTopic } from '../../src/protocol/topics.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const devices = ['cu-1', 'cu-2'];

/** What the scenario leaves to look at: the server started again (it leads), the rows before the stop. */
interface Caught {
  ts: TestServer;
  jobId: string;
  /** cu-1's and cu-2's executions as they were before the stop. */
  before: (ExecutionRecord | undefined)[];
  /** The time stamped on cu-2's shadow report, in seconds (100 s before it was written). */
  at: number;
  /** Date.now() just before the server was started again. */
  restartAt: number;
  rows: () => Promise<(ExecutionRecord | undefined)[]>;
}

/**
 * cu-1 and cu-2 report DOWNLOADING; then cu-2's `software` report (`cu2Software`) reaches its
 * shadow alone (a crash between the two commits), written to the store as the replica would,
 * its metadata stamped 100 s ago (a replica's clock behind, or a report that old); the server is
 * stopped and started again on the same data dir, and `check` runs on it once its tracker is idle.
 */
async function leadTakenWithShadowAhead(create: (ts: TestServer) => Promise<string>, cu2Software: (jobId: string) => Record<string, string>, check: (c: Caught) => Promise<void>): Promise<void> {
  let ts: TestServer | undefined = await startTestServer();
  const dataDir = ts.dataDir;
  const clients: TestClient[] = [];
  try {
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(300)));
    for (const id of devices) {
      const c = await TestClient.connect(ts.mqttUrl, id, { username: id, password: await registerDevice(ts, id) });
      await c.subscribe(answerTopic({ deviceId: id, name: '' }, 'update', 'delta'), answerTopic({ deviceId: id, name: '' }, 'update', 'accepted'));
      clients.push(c);
    }
    const jobId = await create(ts);
    const rows = async () => ts!.server.store.getExecutions(devices.map((deviceId) => ({ jobId, deviceId })));
    await eventually(async () => ((await rows()).every((e) => e?.dispatchedAt !== undefined) ? true : undefined), 30_000, 'both commands sent');
    // both report downloading: their executions IN_PROGRESS
    for (const [n, id] of devices.entries()) {
      await clients[n]!.publish(requestTopic({ deviceId: id, name: '' }, 'update'), { state: { reported: { software: { name: 'fw', version: '1.0.0', jobId: agentJobId(jobId), status: 'DOWNLOADING', progress: 0.5 } } } });
    }
    await eventually(async () => ((await rows()).every((e) => e?.status === 'IN_PROGRESS') ? true : undefined), 30_000, 'both IN_PROGRESS');
    await ts.server.tracker.idle();
    for (const c of clients.splice(0)) await c.client.endAsync();
    const shadow = (await ts.server.store.getShadow('cu-2', ''))!;
    const at = Math.floor(Date.now() / 1000) - 100;
    const software = cu2Software(jobId);
    const softwareMeta = Object.fromEntries(Object.keys(software).map((k) => [k, { timestamp: at }]));
    const reported = { ...shadow.state.reported, software };
    assert.equal(await ts.server.store.putShadow({ ...shadow, version: shadow.version + 1, state: { ...shadow.state, reported }, metadata: { ...shadow.metadata, reported: { ...shadow.metadata.reported, software: softwareMeta } }, timestamp: at }, shadow.version), true, "cu-2's shadow written");
    const before = await rows();
    await ts.stop();
    ts = undefined;

    // started again: the lease taken, the catch-up run before start resolves (recover awaits the tracker)
    const restartAt = Date.now();
    ts = await startTestServer({ dataDir });
    assert.equal(ts.server.rollouts.engine.isLeader, true, 'the started instance leads');
    await ts.server.tracker.idle();
    await check({ ts, jobId, before, at, restartAt, rows });
  } finally {
    for (const c of clients) await c.client.endAsync().catch(() => undefined);
    await ts?.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

describe("the catch-up on a lead taken leaves the device's report times alone", () => {
  it('an execution whose report it holds is not written; one whose report only the shadow got takes the report time', async () => {
    await leadTakenWithShadowAhead(
      (ts) => deploy(ts, devices, 'fw@2.0.0'),
      (jobId) => ({ name: 'fw', version: '2.0.0', jobId: agentJobId(jobId), status: 'SUCCESS' }),
      async ({ before, at, rows }) => {
        const [kept, caught] = await rows();
        assert.equal(kept?.status, 'IN_PROGRESS', "cu-1's execution still IN_PROGRESS");
        assert.deepEqual(
          { lastReportAt: kept?.details.lastReportAt, updatedAt: kept?.updatedAt, version: kept?.version },
          { lastReportAt: before[0]?.details.lastReportAt, updatedAt: before[0]?.updatedAt, version: before[0]?.version },
          "cu-1's execution, whose report it held, not written by the lead taken",
        );
        assert.equal(caught?.status, 'SUCCEEDED', "cu-2's SUCCESS, which only its shadow had, recorded");
        assert.equal(caught?.details.lastReportAt, at * 1000, "cu-2's execution stamped with the time its shadow got the report");
      },
    );
  });

  it("a phase only the shadow got, stamped 100 s back, starts its step timer when recorded: no step timeout at the first tick", async () => {
    await leadTakenWithShadowAhead(
      async (ts) => {
        const made = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices }, timeouts: { stepSeconds: 60 } });
        assert.equal(made.status, 201, JSON.stringify(made.body));
        return made.body.job.jobId as string;
      },
      (jobId) => ({ name: 'fw', version: '1.0.0', jobId: agentJobId(jobId), status: 'INSTALLING' }),
      async ({ ts, before, at, restartAt, rows }) => {
        const [, caught] = await rows();
        assert.equal(caught?.details.agentStatus, 'INSTALLING', "cu-2's INSTALLING, which only its shadow had, recorded");
        assert.equal(caught?.details.lastReportAt, at * 1000, "cu-2's lastReportAt the time its shadow got the report");
        const phaseStartedAt = caught?.details.phaseStartedAt as number;
        assert.ok(phaseStartedAt >= before[1]!.dispatchedAt!, `phaseStartedAt ${phaseStartedAt} not before the command was sent (${before[1]!.dispatchedAt})`);
        assert.ok(phaseStartedAt >= restartAt, `phaseStartedAt ${phaseStartedAt} from when the catch-up recorded it (restart at ${restartAt}), not the shadow's ${at * 1000}`);
        assert.ok(caught!.dueAt! >= restartAt + 60_000, `the step deadline ${caught?.dueAt} a full 60 s after the report was recorded (restart at ${restartAt})`);
        await ts.server.rollouts.engine.tick();
        const [, ticked] = await rows();
        assert.equal(ticked?.status, 'IN_PROGRESS', `cu-2 not timed out by the new leader's first tick (${String(ticked?.details.error)})`);
      },
    );
  });
});
