/**
 * Versions stored before SEMVER followed semver §9 (ad26fe0: `2.0.0-rc.01`, a numeric
 * prerelease identifier with a leading zero, was accepted until then) keep working after an
 * upgrade: a build added under such a version is deployed, its command carries a download URL,
 * and the device installs it and reports it. Only new names are held to §9: adding such a
 * version now is refused. Real server, real agent, real MQTT and HTTP.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('a version spelled as before semver §9 was followed', () => {
  let ts: TestServer | undefined;
  let agent: UpdateAgent | undefined;
  let root = '';
  after(async () => {
    await agent?.stop();
    await ts?.close();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('a build stored as fw@2.0.0-rc.01 is deployed, downloaded, installed and reported; a new one so spelled is refused', async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-stored-version-'));
    ts = await startTestServer();
    // the build's bytes go in as a version spelled today; its record as one stored before the upgrade
    const stored = await addArtifact(ts, '2.0.0', randomBytes(4000));
    const record = await ts.server.store.getArtifact('fw', '2.0.0');
    await ts.server.store.putArtifact({ ...record!, version: '2.0.0-rc.01' });
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0-rc.02`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(10)) })).status, 400, 'a new one is refused');

    const started = await startAgent(ts, root, 'loose-1');
    agent = started.agent;
    const jobId = await deploy(ts, ['loose-1'], 'fw@2.0.0-rc.01');
    const done = await outcome(started.finished, jobId);
    assert.equal(done.status, 'SUCCESS', JSON.stringify(done));
    assert.equal(done.version, '2.0.0-rc.01');
    const reported = await eventually(async () => {
      const s = (await ts!.server.store.getShadow('loose-1', ''))?.state.reported?.software as { version?: string; jobId?: string; status?: string } | undefined;
      return s?.jobId === jobId && s.status === 'SUCCESS' ? s : undefined;
    }, 15_000, 'the device reports the build');
    assert.equal(reported.version, '2.0.0-rc.01');
    assert.equal(stored.size, 4000);
  });
});
