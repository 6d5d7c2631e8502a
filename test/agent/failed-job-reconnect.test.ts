/**
 * A device whose last job failed keeps that job in its desired state (the server still asks
 * for the build), so every report it makes is answered by a delta naming the finished job.
 * After a restart the agent re-reports that outcome once at most, and then is quiet: the
 * delta answering its own report is no new command (it came in the same read as the report's
 * `accepted`, before the agent had noted the answer). Real server, real agent, real MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('an agent restarted after a failed job', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-failed-reconnect-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('re-reports the outcome at most once, then sends nothing more', async () => {
    const deviceId = 'dev-failed';
    const password = await registerDevice(ts, deviceId);
    const installer = () => new SlotInstaller({ dir: path.join(dir, deviceId), initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'exit 3' });
    const first = await startAgent(ts, dir, deviceId, { username: deviceId, password, installer: installer() });
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    assert.equal((await outcome(first.finished, jobId)).status, 'FAILURE');
    await first.agent.stop();
    const version = async () => (await ts.server.store.getShadow(deviceId, ''))!.version;
    const stopped = await version();

    const lines: string[] = [];
    const again = await startAgent(ts, dir, deviceId, { username: deviceId, password, installer: installer(), logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    try {
      // its connect report is recorded: the desired state still names the failed job
      await eventually(async () => ((await version()) > stopped ? true : undefined), 15_000, 'the connect report');
      // a loop would change the shadow hundreds of times a second from here on
      await sleep(1000);
      const settled = await version();
      await sleep(1000);
      assert.equal(await version(), settled, 'no report after the catch-up');
      assert.ok(settled - stopped <= 2, `the connect report and at most one re-report, not ${settled - stopped} versions`);
      assert.ok(lines.filter((l) => l.includes('duplicate command for a finished job')).length <= 1, lines.join('\n'));
    } finally {
      await again.agent.stop();
    }
  });
});
