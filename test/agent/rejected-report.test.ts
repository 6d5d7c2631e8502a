/**
 * An agent whose report of what runs is refused for good (its shadow has no room left for it:
 * 413) does not retry that report for ever: it logs why and acts on its command all the same.
 * Real server, real agent, real MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';

describe('an agent whose connect report is refused for good', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-rejected-report-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('logs the refusal once and still takes its command', async () => {
    const deviceId = 'dev-full';
    const password = await registerDevice(ts, deviceId);
    // something else on the device filled its shadow almost to the limit (8 KiB)
    const raw = await TestClient.connect(ts.mqttUrl, deviceId, { username: deviceId, password });
    await raw.subscribe(`state/${deviceId}/update/accepted`);
    assert.equal((await raw.request(`state/${deviceId}/update`, { state: { reported: { filler: 'f'.repeat(7900) } } })).topic, `state/${deviceId}/update/accepted`);
    await raw.end();
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');

    const lines: string[] = [];
    // built here: startAgent waits for a report to be stored, which this device's never is
    const agent = new UpdateAgent({
      deviceId,
      username: deviceId,
      password,
      brokerUrl: ts.mqttUrl,
      installer: new SlotInstaller({ dir: path.join(dir, deviceId), initialVersion: '1.0.0', initialName: 'fw' }),
      stateDir: path.join(dir, deviceId, '.updraft'),
      signingPublicKey: ts.server.security.signingKey.publicKeyPem,
      logger: createLogger({ level: 'info', write: (l) => lines.push(l) }),
      retryDelayMs: 100,
      maxRetryDelayMs: 500,
    });
    const finished: JobFinishedEvent[] = [];
    agent.on('job-finished', (e) => finished.push(e));
    await agent.start();
    try {
      await eventually(async () => finished.find((e) => e.jobId === jobId), 30_000, 'the command taken and carried out');
      const refused = lines.filter((l) => l.includes('report of what runs rejected'));
      assert.equal(refused.length, 1, lines.join('\n'));
      assert.match(refused[0]!, /\(413\)/);
      assert.ok(!lines.some((l) => l.includes('catch-up after connect failed')), 'the refusal is not retried');
    } finally {
      await agent.stop();
    }
  });
});
