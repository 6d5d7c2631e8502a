/** Shared steps of the security and agent tests: a real server, artifacts, deployments and cancels over the API, real agents, late commands. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { UpdateAgent } from '../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import type { Installer } from '../../src/agent/installer.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { answerTopic, deltaTopic, requestTopic } from '../../src/protocol/topics.ts';
import { createLogger, silentLogger, type Logger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, type TestServer } from '../helpers/server.ts';

/** Adds `bytes` as fw@version over the API. */
export async function addArtifact(ts: TestServer, version: string, bytes: Buffer, name = 'fw'): Promise<{ sha256: string; size: number; signature?: string }> {
  const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=${name}&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(bytes) });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { sha256: string; size: number; signature?: string };
}

/** Deploys an artifact to devices; resolves with the job id. */
export async function deploy(ts: TestServer, devices: string[], artifact: string): Promise<string> {
  const res = await fetch(`${ts.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices, artifact }) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { job: { jobId: string } }).job.jobId;
}

/** Options of an agent of `ts` installing into `installDir` with `installer`: quick retries, the server's signing key, silent. */
export function testAgentOptions(ts: TestServer, deviceId: string, installDir: string, installer: Installer): UpdateAgentOptions {
  return {
    deviceId,
    brokerUrl: ts.mqttUrl,
    installer,
    stateDir: path.join(installDir, '.updraft'),
    signingPublicKey: ts.server.security.signingKey.publicKeyPem,
    logger: silentLogger,
    retryDelayMs: 100,
    maxRetryDelayMs: 500,
    mqttOptions: { reconnectPeriod: 200 },
  };
}

/** A real agent with the slot installer in `<root>/<deviceId>`, connected and reported. */
export async function startAgent(ts: TestServer, root: string, deviceId: string, opts: Partial<UpdateAgentOptions> & { initialVersion?: string } = {}): Promise<{ agent: UpdateAgent; installDir: string; finished: JobFinishedEvent[] }> {
  const installDir = path.join(root, deviceId);
  const { initialVersion, ...rest } = opts;
  const credentials = opts.password !== undefined || opts.mqttOptions?.cert !== undefined ? {} : { username: deviceId, password: await registerDevice(ts, deviceId) };
  const agent = new UpdateAgent({
    ...testAgentOptions(ts, deviceId, installDir, new SlotInstaller({ dir: installDir, initialVersion: initialVersion ?? '1.0.0', initialName: 'fw' })),
    ...credentials,
    ...rest,
  });
  const finished: JobFinishedEvent[] = [];
  agent.on('job-finished', (e) => finished.push(e));
  await agent.start();
  await eventually(async () => (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software, 15_000, `${deviceId} reported`);
  return { agent, installDir, finished };
}

/** Waits for the agent's outcome of `jobId`. */
export function outcome(finished: JobFinishedEvent[], jobId: string): Promise<JobFinishedEvent> {
  return eventually(async () => finished.find((e) => e.jobId === jobId), 30_000, `job ${jobId} finished`);
}

/** Cancels `jobId` over the API, asserting 200. */
export async function cancelJob(ts: TestServer, jobId: string): Promise<void> {
  const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
  assert.equal(res.status, 200, await res.text());
}

/** A logger writing JSON lines at info into `lines`. */
export function lineLogger(lines: string[]): Logger {
  return createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) });
}

/** The `msg` of each of `lineLogger`'s lines. */
export function logMessages(lines: string[]): string[] {
  return lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
}

/** The command of the job the device is asked for, as its `get` shows it (the delta an instance held), with the document's version. */
export async function heldCommand(ts: TestServer, deviceId: string, password: string): Promise<{ command: JsonObject; version: number }> {
  const device = await TestClient.connect(ts.mqttUrl, deviceId, { username: deviceId, password });
  try {
    await device.subscribe(answerTopic({ deviceId, name: '' }, 'get', 'accepted'));
    await device.publish(requestTopic({ deviceId, name: '' }, 'get'), { clientToken: 'held' });
    const doc = (await device.next((m) => m.body?.clientToken === 'held')).body;
    return { command: doc.state.delta.software as JsonObject, version: doc.version as number };
  } finally {
    await device.client.endAsync();
  }
}

/** Publishes `command` on the device's delta topic as the instance that held it would (at the version of the document it was written in), then a newer delta (`marker`) in order over the same connection: once the agent heard the marker, it has handled the late one. */
export async function lateDelta(ts: TestServer, agent: UpdateAgent, deviceId: string, command: JsonObject, version: number, marker: number): Promise<void> {
  const heard = new Promise<void>((resolve) => agent.on('delta', (d) => d.state.marker === marker && resolve()));
  const now = Math.floor(Date.now() / 1000);
  await ts.server.broker.publish(deltaTopic(deviceId), JSON.stringify({ state: { software: command }, metadata: {}, version, timestamp: now }), 1);
  const shadow = await ts.server.store.getShadow(deviceId, '');
  await ts.server.broker.publish(deltaTopic(deviceId), JSON.stringify({ state: { marker }, metadata: {}, version: shadow!.version, timestamp: now }), 1);
  await heard;
}
