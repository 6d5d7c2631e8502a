/**
 * Canceling a job stops a device that is downloading its build, also when the build the
 * device runs is not in the catalogue (a factory image never uploaded): the server cannot
 * send a stay command then and clears desired software instead, which sends no delta; the
 * agent sees the clear in the update's accepted answer. Real server, real agent, real HTTP
 * download (held before its first byte by a gate, so the cancel lands mid-download).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { downloadArtifact, type Downloader } from '../../src/agent/downloader.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('canceling a job while a device downloads it', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cancel-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(500)));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('stops the download of a device whose running build is not in the catalogue, and the execution ends CANCELED', async () => {
    let started!: () => void;
    const downloading = new Promise<void>((resolve) => (started = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    // the real downloader, held until the test releases it (or the job is called off)
    const download: Downloader = async (opts) => {
      started();
      await new Promise<void>((resolve, reject) => {
        void gate.then(resolve);
        opts.signal?.addEventListener('abort', () => reject(opts.signal!.reason), { once: true });
      });
      return downloadArtifact(opts);
    };
    const { agent, finished } = await startAgent(ts, dir, 'factory-1', { initialVersion: '0.9.0', download });
    try {
      assert.equal(await ts.server.store.getArtifact('fw', '0.9.0'), undefined, 'the running build is not catalogued');
      const jobId = await deploy(ts, ['factory-1'], 'fw@2.0.0');
      await downloading;
      const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
      assert.equal(res.status, 200);
      const done = await outcome(finished, jobId);
      release();
      assert.equal(done.status, 'FAILURE');
      assert.equal(done.error, 'canceled: the server no longer asks for this update');
      assert.equal(done.version, '0.9.0', 'the device still runs its build');
      const execution = await eventually(async () => {
        const e = await ts.server.store.getExecution(jobId, 'factory-1');
        return e?.status === 'CANCELED' ? e : undefined;
      }, 10_000, 'the execution canceled');
      assert.equal(execution.status, 'CANCELED');
      const shadow = await ts.server.store.getShadow('factory-1', '');
      assert.equal(shadow?.state.desired?.software, undefined, 'nothing is asked of the device any more');
    } finally {
      release();
      await agent.stop();
    }
  });
});
