/**
 * An agent whose download meets an outage of the server's artifact storage rides it out and
 * installs once storage is back: the server answers 503 with Retry-After, and the agent
 * retries for its time budget without progress (here 30 s, its pauses shortened to 200 ms),
 * where it gave up after 5 attempts (about 15 s of pauses by default) and the job failed.
 * Real server and HTTP, an s3rver stopped and started under it, a real agent over MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('an agent downloading while the artifact storage is down', () => {
  let s3: RestartableS3;
  let ts: TestServer;
  let root: string;
  let agent: UpdateAgent | undefined;

  before(async () => {
    s3 = await startRestartableS3();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-outage-agent-'));
    // no memory cache: every download reads the bucket
    ts = await startTestServer({ flags: { blob: s3.blobUrl('agent-outage'), 'download-cache-bytes': 0 } });
  });
  after(async () => {
    await agent?.stop();
    await ts?.close();
    await s3?.close();
    await rm(root, { recursive: true, force: true });
  });

  it('retries through the outage, past the 5 attempts it used to give up after, and installs once storage is back', async () => {
    const bytes = Buffer.alloc(30_000, 6);
    await addArtifact(ts, '2.0.0', bytes);
    const secret = await registerDevice(ts, 'dev-1');
    // the command goes out while storage answers; the device is offline until it is down
    const jobId = await deploy(ts, ['dev-1'], 'fw@2.0.0');
    await eventually(async () => (await ts.server.store.getShadow('dev-1', ''))?.state.desired?.software, 10_000, 'the command sent');
    await s3.down();

    const lines: string[] = [];
    const started = await startAgent(ts, root, 'dev-1', {
      username: 'dev-1',
      password: secret,
      logger: createLogger({ level: 'info', write: (l) => lines.push(l) }),
      downloadSettings: { retryForMs: 30_000, retryDelayMs: 50, maxRetryDelayMs: 200 },
    });
    agent = started.agent;
    const retries = () => lines.filter((l) => l.includes('download interrupted, retrying'));
    await eventually(async () => (retries().length >= 8 || started.finished.length > 0 ? true : undefined), 20_000, 'eight retries, or an outcome');
    assert.deepEqual(started.finished, [], `no outcome while storage is down:\n${lines.join('\n')}`);
    // the server said when to try again (5 s), bounded by the agent's longest pause (200 ms here)
    assert.match(retries()[0]!, /error="HTTP 503: unavailable \(503\): the server cannot reach its storage just now; try again in 5 s" attempt=1 delayMs=200 retryAfterMs=5000$/);

    await s3.up();
    const done = await outcome(started.finished, jobId);
    assert.equal(done.status, 'SUCCESS', `${done.error}\n${lines.join('\n')}`);
    assert.equal(done.version, '2.0.0');
    await eventually(async () => ((await ts.server.store.getExecution(jobId, 'dev-1'))?.status === 'SUCCEEDED' ? true : undefined), 10_000, 'the execution SUCCEEDED');
  });
});
