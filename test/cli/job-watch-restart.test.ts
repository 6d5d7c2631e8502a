/**
 * `updraft job watch` through a server restart: the job goes on without the watch, so the
 * watch waits for the server (saying so once each way) instead of ending with exit 1, which a
 * CI gate reads as a canceled or aborted rollout (QA: a PostgreSQL outage ended the watch).
 * A watch that never reached the server still fails at once. Real server processes.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('job watch through a server restart', () => {
  let ts: TestServer | undefined;
  let watch: CliProcess | undefined;
  after(async () => {
    await watch?.kill('SIGKILL');
    await ts?.close();
  });

  it('waits for the server to answer again, then goes on to the job\'s end', { timeout: 120_000 }, async () => {
    const port = await freePort();
    const flags = { 'http-port': port };
    ts = await startTestServer({ flags });
    const api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('fw 2.0.0')) });
    assert.equal(up.status, 201);
    await registerDevice(ts, 'dev-w');
    // scheduled for tomorrow: nothing moves until it is canceled
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    const { job } = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['dev-w'] }, plan: { startAt: tomorrow } });
    watch = startCli(['job', 'watch', job.jobId, '--server', ts.httpUrl, '--token', ts.token, '--interval', '250']);
    await watch.waitFor(/SCHEDULED/);

    await ts.stop(); // the data directory stays
    await watch.waitFor(/updraft: the server cannot answer for now \(cannot reach the Updraft server at http:\/\/127\.0\.0\.1:\d+: .+\); watching on\n/);
    ts = await startTestServer({ dataDir: ts.dataDir, flags });
    await watch.waitFor(/updraft: the server answers again\n/);
    await api.call('POST', `/api/v1/jobs/${job.jobId}/cancel`);
    // SIGCONT leaves a running process be: this waits for the watch's own exit
    assert.equal(await watch.kill('SIGCONT'), 1, 'exit 1: the job was canceled');
    assert.match(watch.output(), new RegExp(`job ${job.jobId} CANCELED`));
    assert.equal(watch.output().match(/watching on/g)?.length, 1, 'said once');
  });

  it('fails at once when it never reached the server (a wrong --server)', async () => {
    const port = await freePort();
    const r = await runCli(['job', 'watch', 'some-job', '--server', `http://127.0.0.1:${port}`, '--token', 'x'.repeat(40)]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^updraft: error: cannot reach the Updraft server at http:\/\/127\.0\.0\.1:\d+: .+\n$/);
  });
});
