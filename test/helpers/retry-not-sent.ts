/**
 * A real execution that ended SUCCEEDED with its retry not sent (`details.retryNotSent`,
 * e889929), made on a running test server as in production: the first attempt's command goes
 * out, the job is paused so its retry waits, the attempt times out and the retry is queued, the
 * device's report of the first attempt's SUCCESS comes in over MQTT (sent by an operator as
 * the device would), and the job resumes: at the retry's turn the engine ends it SUCCEEDED with
 * nothing sent. For what shows such an execution (the CLI, the dashboard).
 */
import { randomBytes } from 'node:crypto';
import { ApiClient } from '../../src/cli/api-client.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { addArtifact } from '../security/support.ts';
import { eventually } from './cli.ts';
import { TestClient } from './mqtt-client.ts';
import { registerDevice, type TestServer } from './server.ts';

/** Registers `deviceId`, adds `name`@2.0.0 and makes its job's execution end SUCCEEDED with its retry not sent; resolves with the job id and the execution. */
export async function retryNotSentExecution(ts: TestServer, deviceId: string, name: string): Promise<{ jobId: string; execution: ExecutionRecord }> {
  const api = new ApiClient({ server: ts.httpUrl, token: ts.token });
  await addArtifact(ts, '2.0.0', randomBytes(256), name);
  await registerDevice(ts, deviceId);
  const execution = async () => (await api.call<{ items: ExecutionRecord[] }>('GET', `/api/v1/jobs/${jobId}/executions`)).items[0]!;
  // a timeout long enough for the pause to come first on a slow machine
  const { job } = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: `${name}@2.0.0`, targets: { devices: [deviceId] }, timeouts: { inProgressSeconds: 2 }, retries: { limit: 1 } });
  const jobId = job.jobId;
  await eventually(async () => ((await execution()).dispatchedAt !== undefined ? true : undefined), 30_000, 'the first attempt sent');
  // holds the retry back, as a rate, a later wave or a closed window would
  await api.call('POST', `/api/v1/jobs/${jobId}/pause`);
  await eventually(async () => {
    const e = await execution();
    return e.status === 'QUEUED' && e.attempt === 2 ? true : undefined;
  }, 30_000, 'the attempt timed out, its retry queued');
  const op = await TestClient.connect(ts.mqttUrl, `ops-${deviceId}`, { username: 'operator', password: ts.token });
  try {
    await op.publish(`state/${deviceId}/update`, { state: { reported: { software: { name, version: '2.0.0', jobId, status: 'SUCCESS' } } } });
  } finally {
    await op.end();
  }
  // the report is in the device's shadow before the retry's turn
  await eventually(async () => {
    const d = await api.call<{ shadow: { state: { reported?: { software?: { status?: string } } } } | null }>('GET', `/api/v1/devices/${encodeURIComponent(deviceId)}`);
    return d.shadow?.state.reported?.software?.status === 'SUCCESS' ? true : undefined;
  }, 30_000, 'the SUCCESS reported');
  await api.call('POST', `/api/v1/jobs/${jobId}/resume`);
  const done = await eventually(async () => {
    const e = await execution();
    return e.status === 'SUCCEEDED' ? e : undefined;
  }, 30_000, 'the execution SUCCEEDED');
  return { jobId, execution: done };
}
