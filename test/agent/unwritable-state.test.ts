/**
 * An agent whose state cannot be written (the disk full or read-only) still reports the
 * job's outcome, a FAILURE naming the state file and the disk's answer, instead of leaving
 * the job waiting for its timeout on the server. Real server, real agent, real file system:
 * the state file's place is taken by a directory, which no write replaces, root or not.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('an agent that cannot save its state', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-unwritable-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(500)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the job FAILED with why, and the server records it', async () => {
    const { agent, installDir, finished } = await startAgent(ts, dir, 'ro-1');
    try {
      const file = path.join(installDir, '.updraft', 'agent-state.json');
      await rm(file, { force: true });
      await mkdir(file, { recursive: true });
      await writeFile(path.join(file, 'keep'), 'x'); // a non-empty directory: no rename replaces it
      const jobId = await deploy(ts, ['ro-1'], 'fw@2.0.0');
      const done = await outcome(finished, jobId);
      assert.equal(done.status, 'FAILURE');
      assert.match(done.error ?? '', new RegExp(`^cannot save the agent's state in ${file.replace(/[.]/g, '\\.')}: `));
      assert.equal(done.version, '1.0.0', 'nothing was installed');
      const e = await eventually(async () => {
        const cur = await ts.server.store.getExecution(jobId, 'ro-1');
        return cur?.status === 'FAILED' ? cur : undefined;
      }, 15_000, 'the failure recorded on the server');
      assert.equal(e.details.error, done.error);
    } finally {
      await agent.stop();
    }
  });
});
