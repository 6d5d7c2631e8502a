/** Shared steps of the security tests: a real server, artifacts and deployments over the API, real agents. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { UpdateAgent } from '../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import type { Installer } from '../../src/agent/installer.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
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
