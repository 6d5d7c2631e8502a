/** `updraft artifact prune`: the N newest versions of each name stay, older ones go unless a job still installs them. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('pruning artifacts', () => {
  let ts: TestServer;
  let jobId: string;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
  const names = async () => (await ts.server.artifacts.all()).map((a) => `${a.name}@${a.version}`).sort();

  before(async () => {
    ts = await startTestServer();
    // semantic order differs from the text's: 1.10.0 is the newest fw
    for (const ref of ['fw@1.0.0', 'fw@1.2.0', 'fw@1.9.0', 'fw@1.10.0', 'fw@1.2.1', 'cam@1.0.0', 'cam@2.0.0']) {
      const [name, version] = ref.split('@');
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=${name}&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(3000)) });
      assert.equal(res.status, 201);
    }
    // a job to a device that never connects: it stays unfinished, and so does its build
    await registerDevice(ts, 'idle-1');
    const r = await cli('deploy', '--device', 'idle-1', '--artifact', 'fw@1.2.0', '--json');
    jobId = (JSON.parse(r.stdout) as { job: { jobId: string } }).job.jobId;
  });
  after(() => ts.close());

  it('says what it would delete with --dry-run, and what it would not (a build an unfinished job installs), and deletes nothing', async () => {
    const before = await names();
    const r = await cli('artifact', 'prune', '--keep', '2', '--dry-run');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      'would delete: fw@1.2.1, fw@1.0.0\nkept: cam@2.0.0, cam@1.0.0, fw@1.10.0, fw@1.9.0\n' +
        `not deleted: artifact fw@1.2.0 is installed by jobs that are not finished (${jobId}); cancel them or let them finish, then delete it\n`,
    );
    assert.deepEqual(await names(), before);
  });

  it('keeps the newest of each name, deletes older ones, and leaves one an unfinished job installs, saying why', async () => {
    const r = await cli('artifact', 'prune', '--keep', '2', '--name', 'fw', '--json');
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as { deleted: string[]; kept: string[]; refused: { artifact: string; reason: string }[] };
    assert.deepEqual(out.deleted, ['fw@1.2.1', 'fw@1.0.0']);
    assert.deepEqual(out.kept, ['fw@1.10.0', 'fw@1.9.0']);
    assert.deepEqual(out.refused, [{ artifact: 'fw@1.2.0', reason: `artifact fw@1.2.0 is installed by jobs that are not finished (${jobId}); cancel them or let them finish, then delete it` }]);
    assert.deepEqual(await names(), ['cam@1.0.0', 'cam@2.0.0', 'fw@1.10.0', 'fw@1.2.0', 'fw@1.9.0'], 'cam is not named: untouched');
  });

  it('refuses to keep none, and a name that has no artifact', async () => {
    const none = await cli('artifact', 'prune', '--keep', '0');
    assert.equal(none.code, 2);
    assert.equal(none.stderr, 'updraft: error: keep must be a whole number of at least 1: the newest version of each name always stays\n');
    const unknown = await cli('artifact', 'prune', '--keep', '1', '--name', 'nope');
    assert.equal(unknown.code, 2);
    assert.equal(unknown.stderr, 'updraft: error: no artifact is named nope; list them with: updraft artifact list\n');
  });
});
