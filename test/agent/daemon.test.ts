/** `updraft agent` as a function: validation, and one update end to end with the slot installer. */
import assert from 'node:assert/strict';
import { readlink } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { runAgentDaemon } from '../../src/agent/daemon.ts';
import { UpdraftError } from '../../src/errors.ts';
import { createLogger } from '../../src/util/logger.ts';
import { runCli, startCli } from '../helpers/cli.ts';
import { AgentFixture, eventually } from './support/agent-fixture.ts';

describe('runAgentDaemon', () => {
  let f: AgentFixture;
  beforeEach(async () => {
    f = new AgentFixture();
    await f.start();
  });
  afterEach(() => f.close());

  it('reports every problem of the options at once', async () => {
    await assert.rejects(runAgentDaemon({ deviceId: 'bad/id', installDir: '', initialVersion: 'one', brokerUrl: 'localhost:1883' }), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'CONFIG');
      for (const flag of ['--device', '--install-dir', '--initial-version', '--broker']) assert.ok(err.message.includes(flag), err.message);
      return true;
    });
    // a version spelled as before semver §9 was followed (a unit file written then) is still taken
    await assert.rejects(runAgentDaemon({ deviceId: 'bad/id', installDir: '', initialVersion: '1.0.0-rc.01', brokerUrl: 'localhost:1883' }), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.message.includes('--device') && !err.message.includes('--initial-version'), String(err));
      return true;
    });
  });

  it('installs an update into the install dir, logs one line per phase, and stops on abort', async () => {
    const lines: string[] = [];
    const sigintListeners = process.listenerCount('SIGINT');
    const ctrl = new AbortController();
    const done = runAgentDaemon({
      deviceId: f.deviceId,
      installDir: f.installDir,
      brokerUrl: `mqtt://user:secret@${new URL(f.broker.url).host}`,
      initialVersion: '1.0.0',
      allowUnsigned: true, // the fake shadow server signs nothing
      healthCheck: 'test -f "$UPDRAFT_SLOT/artifact"',
      logger: createLogger({ write: (l) => lines.push(l) }),
      signal: ctrl.signal,
    });
    await f.server.until(() => f.server.gets >= 1, 'the daemon connecting');
    await f.server.setDesired(f.software('job-d'));
    await eventually(() => lines.some((l) => l.includes('job job-d acknowledged: SUCCESS, running 2.0.0')), 'the outcome logged');
    ctrl.abort();
    await done;
    assert.equal(await readlink(path.join(f.installDir, 'current')), path.join('slots', 'a'));
    for (const phase of ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS']) assert.ok(lines.some((l) => l.includes(`job job-d ${phase}`)), phase);
    assert.ok(lines.some((l) => l.includes('stopped')));
    assert.ok(!lines.some((l) => l.includes('secret') || l.includes('sig=')), 'no secret in the log');
    assert.equal(process.listenerCount('SIGINT'), sigintListeners);
  });

  it('updraft agent --max-url-refreshes: a download refused with 403 fails after 1 + that many attempts', async () => {
    f.http.refuseNext = Number.POSITIVE_INFINITY;
    const agent = startCli(['agent', '--device', f.deviceId, '--install-dir', f.installDir, '--broker', f.broker.url, '--password', 'x', '--insecure-allow-unsigned', '--max-url-refreshes', '1']);
    try {
      await agent.waitFor(/connected/);
      await f.server.until(() => f.server.gets >= 1, 'the daemon catching up');
      await f.server.setDesired(f.software('job-cli'));
      await agent.waitFor(/job job-cli FAILURE 2\.0\.0: download refused with HTTP 403 on 2 attempts, 1 fresh URL asked for \(maxUrlRefreshes 1\)/);
      assert.equal(f.http.requests.length, 2);
    } finally {
      await agent.kill();
    }
  });

  it('updraft agent --download-retry-for: how long a download retries without progress; 0 fails at the first 503', async () => {
    f.http.refuseNext = Number.POSITIVE_INFINITY;
    f.http.refuseStatus = 503;
    f.http.refuseHeaders = { 'retry-after': '5' };
    const agent = startCli(['agent', '--device', f.deviceId, '--install-dir', f.installDir, '--broker', f.broker.url, '--password', 'x', '--insecure-allow-unsigned', '--download-retry-for', '0']);
    try {
      await agent.waitFor(/connected/);
      await f.server.until(() => f.server.gets >= 1, 'the daemon catching up');
      await f.server.setDesired(f.software('job-retry'));
      await agent.waitFor(/job job-retry FAILURE 2\.0\.0: download failed: no progress in 0 s of retrying \(1 attempt\): HTTP 503: injected 503/);
      assert.equal(f.http.requests.length, 1);
    } finally {
      await agent.kill();
    }
  });

  it('updraft agent refuses a --download-retry-for that is not a whole number of seconds from 0 to a week', async () => {
    for (const n of ['long', '1.5', '604801', '']) {
      const r = await runCli(['agent', '--device', f.deviceId, '--install-dir', f.installDir, '--download-retry-for', n]);
      assert.equal(r.code, 2, `--download-retry-for ${JSON.stringify(n)} is bad input: ${r.stderr}`);
      assert.equal(r.stderr, 'updraft: error: invalid agent options: --download-retry-for must be a whole number of seconds from 0 to 604800 (a week)\n');
    }
  });

  it('updraft agent refuses a --max-url-refreshes that is not a whole number from 0 to 100', async () => {
    for (const n of ['many', '1.5', '101', '']) {
      const r = await runCli(['agent', '--device', f.deviceId, '--install-dir', f.installDir, '--max-url-refreshes', n]);
      assert.equal(r.code, 2, `--max-url-refreshes ${JSON.stringify(n)} is bad input: ${r.stderr}`);
      assert.equal(r.stderr, 'updraft: error: invalid agent options: --max-url-refreshes must be a whole number from 0 to 100\n');
    }
  });
});
