/**
 * The fetch from the start after a resumed download fails verification is made once per job
 * (docs/agent.md, step 5), also across restarts: the agent saves it with the job. It was
 * counted in the downloader's call, so each restart mid-download allowed another one: a
 * device restarted by a watchdog, whose resumes keep failing verification, fetched the whole
 * build again at every start. A real server, broker and agent; the partial file is damaged
 * while the agent is stopped (as a resume that brings wrong bytes would leave it), and the
 * download is paced so that the agent can be stopped in its middle.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

const SIZE = 1_000_000;
/** Bytes per second: a whole fetch takes 10 s, so the agent is stopped well inside one. */
const RATE = 100_000;

describe('UpdateAgent: the one fetch from the start is kept across restarts', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-refetch-restart-'));
    await addArtifact(ts, '2.0.0', randomBytes(SIZE));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('a download resumed after a restart that fails verification again fails, the fetch from the start made before the restart', async () => {
    const deviceId = 'refetch-1';
    const lines: string[] = [];
    const opts = {
      username: deviceId,
      password: await registerDevice(ts, deviceId),
      logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }),
      downloadSettings: { maxBytesPerSecond: RATE },
    };
    const start = async () => {
      const a = await startAgent(ts, root, deviceId, opts);
      agents.push(a.agent);
      return a;
    };
    const refetches = () => lines.filter((l) => l.includes('resumed download failed verification, downloading again from the start')).length;
    let a = await start();
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    const part = path.join(a.installDir, '.updraft', 'downloads', `${jobId}.part`);
    const held = () => stat(part).then((s) => s.size, () => 0);
    /** Flips the first 1,000 bytes of the partial file (the agent stopped). */
    const damage = async () => {
      const fh = await open(part, 'r+');
      const head = Buffer.alloc(1000);
      await fh.read(head, 0, head.length, 0);
      for (let i = 0; i < head.length; i++) head[i] = head[i]! ^ 0xff;
      await fh.write(head, 0, head.length, 0);
      await fh.close();
    };

    // 1. stopped mid-download, the partial file damaged
    await eventually(async () => ((await held()) >= 40_000 ? true : undefined), 30_000, 'a part of the download');
    await a.agent.stop();
    assert.ok((await held()) < SIZE, 'stopped in the middle of the download');
    await damage();

    // 2. the resumed file fails verification: the one fetch from the start; stopped in its middle, damaged again
    a = await start();
    await eventually(async () => (refetches() === 1 ? true : undefined), 30_000, 'the fetch from the start');
    await eventually(async () => ((await held()) >= 40_000 ? true : undefined), 30_000, 'a part of the fetch from the start');
    await a.agent.stop();
    assert.ok((await held()) < SIZE, 'stopped in the middle of the fetch from the start');
    const saved = JSON.parse(await readFile(path.join(a.installDir, '.updraft', 'agent-state.json'), 'utf8')) as { inFlight?: { fetchedFromStart?: boolean } };
    await damage();

    // 3. resumed again, it fails verification again: the job fails, no second fetch from the start
    a = await start();
    const done = await outcome(a.finished, jobId);
    assert.equal(done.status, 'FAILURE', `a second fetch from the start was made: ${JSON.stringify(done)}`);
    assert.match(done.error ?? '', /^sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64} \(after downloading it again from the start\)$/);
    assert.equal(refetches(), 1, 'one fetch from the start in all');
    assert.equal(saved.inFlight?.fetchedFromStart, true, 'saved with the job');
  });
});
