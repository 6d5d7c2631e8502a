/**
 * The Software Update pattern end to end with the real agent library and the default slot
 * installer: success, a failed health check, a tampered artifact, and a server restart
 * with the state intact and an offline device catching up.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

async function addArtifact(ts: TestServer, version: string, bytes: Buffer) {
  const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(bytes) });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { sha256: string; size: number };
}

async function deploy(ts: TestServer, device: string, artifact: string): Promise<string> {
  const res = await fetch(`${ts.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices: [device], artifact }) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { job: { jobId: string } }).job.jobId;
}

async function execution(ts: TestServer, jobId: string, device: string) {
  await ts.server.tracker.idle();
  return ts.server.store.getExecution(jobId, device);
}

function finalExecution(ts: TestServer, jobId: string, device: string) {
  return eventually(async () => {
    const x = await execution(ts, jobId, device);
    return x && ['SUCCEEDED', 'FAILED'].includes(x.status) ? x : undefined;
  }, 30_000, `job ${jobId} final`);
}

describe('software update pattern, end to end', () => {
  let dir: string;
  let ts: TestServer;
  let mqttPort: number;
  let httpPort: number;
  const agents = new Map<string, UpdateAgent>();
  const secrets: Record<string, string> = {};

  const startAgent = async (deviceId: string, healthCheck?: string) => {
    const installDir = path.join(dir, deviceId);
    secrets[deviceId] ??= await registerDevice(ts, deviceId);
    const agent = new UpdateAgent({
      deviceId,
      username: deviceId,
      password: secrets[deviceId],
      brokerUrl: `mqtt://127.0.0.1:${mqttPort}`,
      installer: new SlotInstaller({ dir: installDir, initialVersion: '1.0.0', initialName: 'fw', ...(healthCheck ? { healthCheck } : {}) }),
      stateDir: path.join(installDir, '.updraft'),
      signingPublicKey: ts.server.security.signingKey.publicKeyPem,
      logger: silentLogger,
      retryDelayMs: 100,
      maxRetryDelayMs: 500,
      mqttOptions: { reconnectPeriod: 200 },
    });
    agents.set(deviceId, agent);
    await agent.start();
    await eventually(async () => (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software, 15_000, `${deviceId} reported`);
    return { agent, installDir };
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-e2e-'));
    [mqttPort, httpPort] = [await freePort(), await freePort()];
    ts = await startTestServer({ dataDir: path.join(dir, 'server'), flags: { 'mqtt-port': mqttPort, 'http-port': httpPort } });
  });
  after(async () => {
    await Promise.all([...agents.values()].map((a) => a.stop()));
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  const v2 = randomBytes(200_000);

  it('steps 1-9: the device installs the new build and the replica accepts its report', async () => {
    const watch = await TestClient.connect(ts.mqttUrl, 'watch-1', { username: 'operator', password: ts.token });
    await watch.subscribe('state/dev-ok/#');
    const { installDir } = await startAgent('dev-ok');
    await addArtifact(ts, '2.0.0', v2);
    const jobId = await deploy(ts, 'dev-ok', 'fw@2.0.0');

    const x = await finalExecution(ts, jobId, 'dev-ok');
    assert.equal(x.status, 'SUCCEEDED');
    const installed = await readFile(path.join(installDir, 'current', 'artifact'));
    assert.equal(createHash('sha256').update(installed).digest('hex'), createHash('sha256').update(v2).digest('hex'));

    // what travelled over MQTT, in order: delta (command), progress reports, SUCCESS, accepted
    const delta = await watch.next((m) => m.topic === 'state/dev-ok/update/delta' && m.body.state.software?.jobId === jobId);
    assert.match(delta.body.state.software.url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/download\/fw\/2\.0\.0\?device=dev-ok&/);
    const statuses = watch.log.filter((m) => m.topic === 'state/dev-ok/update/accepted' && m.body.state.reported?.software?.jobId === jobId).map((m) => m.body.state.reported.software.status);
    // progress first; phases reached while an answer was pending are folded into the next report
    assert.equal(statuses[0], 'DOWNLOADING', `progress reported: ${statuses.join(',')}`);
    assert.equal(statuses.at(-1), 'SUCCESS');
    await watch.end();
  });

  it('a failing health check rolls back and ends in FAILURE with the reason and the old version', async () => {
    const { installDir } = await startAgent('dev-hc', 'echo "service did not come up" >&2; exit 3');
    const before = await readlink(path.join(installDir, 'current')).catch(() => undefined);
    const jobId = await deploy(ts, 'dev-hc', 'fw@2.0.0');
    const x = await finalExecution(ts, jobId, 'dev-hc');
    assert.equal(x.status, 'FAILED');
    assert.match(String(x.details.error), /health check/i);
    const reported = (await ts.server.store.getShadow('dev-hc', ''))!.state.reported!.software as Record<string, unknown>;
    assert.equal(reported.version, '1.0.0', 'reported is the truth: the old version runs');
    assert.equal(reported.status, 'FAILURE');
    assert.equal(await readlink(path.join(installDir, 'current')).catch(() => undefined), before);
  });

  it('a byte flipped in the stored artifact is never installed', async () => {
    const v3 = randomBytes(50_000);
    const { sha256 } = await addArtifact(ts, '3.0.0', v3);
    const blob = path.join(ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256);
    const tampered = Buffer.from(v3);
    tampered.writeUInt8(tampered.readUInt8(1234) ^ 0xff, 1234);
    await writeFile(blob, tampered);
    const { installDir } = await startAgent('dev-tamper');
    const jobId = await deploy(ts, 'dev-tamper', 'fw@3.0.0');
    const x = await finalExecution(ts, jobId, 'dev-tamper');
    assert.equal(x.status, 'FAILED');
    assert.match(String(x.details.error), /sha256 mismatch/);
    assert.equal(x.details.version, '1.0.0');
    await assert.rejects(readFile(path.join(installDir, 'current', 'artifact')), 'nothing was installed');
  });

  it('keeps every state across a server restart; an offline device catches up on reconnect', async () => {
    const before = await ts.server.store.getShadow('dev-ok', '');
    const token = ts.token;
    await ts.stop();

    // while the server is down: nothing to do but wait; then it comes back on the same ports
    ts = await startTestServer({ dataDir: path.join(dir, 'server'), flags: { 'mqtt-port': mqttPort, 'http-port': httpPort } });
    assert.equal(ts.token, token, 'the operator token survives');
    const after = await ts.server.store.getShadow('dev-ok', '');
    assert.equal(after?.version, before?.version);
    assert.deepEqual(after?.state, before?.state);
    const artifacts = await ts.server.artifacts.all();
    assert.deepEqual(artifacts.map((a) => a.version).sort(), ['2.0.0', '3.0.0']);
    const history = await ts.server.store.listExecutions({ deviceId: 'dev-ok' });
    assert.equal(history[0]?.status, 'SUCCEEDED');

    // the agent reconnects by itself; a new deployment reaches it
    const v4 = randomBytes(10_000);
    await addArtifact(ts, '4.0.0', v4);
    const jobId = await deploy(ts, 'dev-ok', 'fw@4.0.0');
    assert.equal((await finalExecution(ts, jobId, 'dev-ok')).status, 'SUCCEEDED');

    // a device that is offline when deployed to gets the update when it comes back
    await agents.get('dev-tamper')!.stop();
    await eventually(async () => ((await (await fetch(`${ts.httpUrl}/api/v1/devices/dev-tamper`, { headers: { authorization: `Bearer ${ts.token}` } })).json()).online === false ? true : undefined), 15_000, 'dev-tamper offline');
    const offlineJob = await deploy(ts, 'dev-tamper', 'fw@4.0.0');
    assert.equal((await execution(ts, offlineJob, 'dev-tamper'))?.status, 'QUEUED');
    await startAgent('dev-tamper'); // same install dir and state: the device comes back
    assert.equal((await finalExecution(ts, offlineJob, 'dev-tamper')).status, 'SUCCEEDED');
    const installed = await readFile(path.join(dir, 'dev-tamper', 'current', 'artifact'));
    assert.deepEqual(installed, v4);
  });
});
