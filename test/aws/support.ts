/** Shared steps of the AWS compatibility tests: artifacts and deployments over the API. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestServer } from '../helpers/server.ts';

/** Adds a random build as `name@version` over the API. */
export async function addArtifact(ts: { httpUrl: string; token: string }, version: string, name = 'fw'): Promise<{ sha256: string; size: number }> {
  const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=${name}&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(1000)) });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()) as { sha256: string; size: number };
}

/** Deploys `artifact` (`name@version`) to devices; resolves with the job id. */
export async function deploy(ts: { httpUrl: string; token: string }, devices: string[], artifact: string): Promise<string> {
  const res = await fetch(`${ts.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices, artifact }) });
  assert.equal(res.status, 201, await res.clone().text());
  return ((await res.json()) as { job: { jobId: string } }).job.jobId;
}

/** The stored execution status of `jobId` on `deviceId`. */
export async function executionStatus(ts: TestServer, jobId: string, deviceId: string): Promise<string | undefined> {
  return (await ts.server.store.getExecution(jobId, deviceId))?.status;
}
