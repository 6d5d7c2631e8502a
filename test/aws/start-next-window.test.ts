/**
 * A start-next sent between the rollout's two writes of a command (the command into the
 * shadow, then the execution recorded sent) with a real server and broker: the version it
 * answers is the one the device's next update is checked against. The rollout's second write
 * is held by wrapping the real store's updateExecution, so the device's request lands in the
 * window every time, not by chance.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;
const WAITING = 'jobs request waits for the rollout to record the command sent';

describe('AWS Jobs start-next while the command is being sent', () => {
  let ts: TestServer;
  let dev: TestClient;
  let sawWaiting: () => void = () => {};
  const waitingLogged = new Promise<void>((resolve) => (sawWaiting = resolve));

  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'debug', write: (line) => line.includes(WAITING) && sawWaiting() }) });
    await addArtifact(ts, '2.0.0');
    dev = await connectDevice(ts, 'sn-1');
    await dev.subscribe(jobs('sn-1', '#'), '$aws/things/sn-1/shadow/update/+');
    await dev.request('$aws/things/sn-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it("answers start-next with the version the execution keeps once the rollout's dispatch write is done", async () => {
    // hold the rollout's "sent" write of sn-1's execution (dispatchedAt, no status change)
    const store = ts.server.store;
    const update = store.updateExecution.bind(store);
    let held: (jobId: string) => void = () => {};
    const heldWrite = new Promise<string>((resolve) => (held = resolve));
    let releaseWrite: () => void = () => {};
    const released = new Promise<void>((resolve) => (releaseWrite = resolve));
    let holding = true;
    store.updateExecution = async (next: ExecutionRecord, changed?: ReadonlySet<keyof ExecutionRecord>) => {
      if (holding && next.deviceId === 'sn-1' && changed?.has('dispatchedAt') && !changed.has('status')) {
        holding = false;
        held(next.jobId);
        await released;
      }
      return update(next, changed as Set<keyof ExecutionRecord>);
    };
    try {
      // the deployment's first wave is sent within its request: answered once the write is let go
      const deployed = deploy(ts, ['sn-1'], 'fw@2.0.0');
      const jobId = await heldWrite; // the command is in the shadow; its execution is not recorded sent yet
      const answer = dev.request(jobs('sn-1', 'start-next'), {});
      // the answer (no waiting) or the door waiting for the write, whichever comes first
      await Promise.race([answer, waitingLogged]);
      releaseWrite();
      assert.equal(await deployed, jobId);
      const started = await answer;
      assert.equal(started.topic, jobs('sn-1', 'start-next/accepted'), JSON.stringify(started.body));
      assert.deepEqual([started.body.execution.jobId, started.body.execution.status], [jobId, 'IN_PROGRESS']);
      const v = started.body.execution.versionNumber as number;
      const done = await dev.request(jobs('sn-1', `${jobId}/update`), { status: 'SUCCEEDED', expectedVersion: v });
      assert.equal(done.topic, jobs('sn-1', `${jobId}/update/accepted`), `told versionNumber ${v}: ${JSON.stringify(done.body)}`);
      assert.equal(await executionStatus(ts, jobId, 'sn-1'), 'SUCCEEDED');
    } finally {
      releaseWrite();
      store.updateExecution = update;
    }
  });
});
