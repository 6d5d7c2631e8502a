/** `updraft doctor` against a real server: all well, a rollout waiting for approval, a wrong token, no server, a skewed clock. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { diagnose } from '../../src/cli/doctor-command.ts';
import { freePort } from '../helpers/free-port.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, outcome, startAgent } from '../security/support.ts';

describe('updraft doctor', () => {
  let ts: TestServer;
  let root: string;
  let agent: UpdateAgent | undefined;
  const doctor = (...extra: string[]) => runCli(['doctor', '--server', ts.httpUrl, '--token', ts.token, ...extra]);

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-doctor-'));
  });
  after(async () => {
    await agent?.stop();
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('says a fresh server is well, check by check, and exits 0', async () => {
    const r = await doctor();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const verdicts = Object.fromEntries(r.stdout.trim().split('\n').map((l) => [l.slice(6, 17).trim(), l.slice(0, 4).trim()]));
    assert.deepEqual(verdicts, { reachable: 'ok', clock: 'ok', ready: 'ok', token: 'ok', 'signing key': 'note', CA: 'ok', tls: 'ok', load: 'ok', leader: 'ok' });
    assert.match(r.stdout, /^ok    leader +this instance leads rollouts$/m, 'alone on its store, it leads');
    assert.match(r.stdout, /^note  signing key  [0-9a-f]{16}, no certificate from an offline root: replacing it means provisioning every device again/m);
  });

  it('names a rollout waiting for an approval', async () => {
    await addArtifact(ts, '2.0.0', randomBytes(2000));
    const started = await startAgent(ts, root, 'doc-1');
    agent = started.agent;
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['doc-1'] }, plan: { waves: [{ count: 1, requireApproval: true }, { percent: 100 }] } }) });
    const jobId = ((await res.json()) as { job: { jobId: string } }).job.jobId;
    assert.equal((await outcome(started.finished, jobId)).status, 'SUCCESS');
    const r = await eventually(async () => {
      const d = await doctor('--json');
      return d.stdout.includes('"rollouts"') ? d : undefined;
    }, 30_000, 'the paused job reported');
    const findings = JSON.parse(r.stdout) as { verdict: string; check: string; text: string }[];
    const waiting = findings.find((f) => f.check === 'rollouts')!;
    assert.equal(waiting.verdict, 'note');
    assert.match(waiting.text, new RegExp(`^job ${jobId} \\(fw@2\\.0\\.0\\) waits for an operator: wave 1 finished \\(100\\.0% succeeded\\) and needs approval`));
    assert.equal(r.code, 0);
  });

  it('fails, exit 1, on a refused token and on a server that does not answer', async () => {
    const wrong = await runCli(['doctor', '--server', ts.httpUrl, '--token', 'not-the-token']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stdout, /^FAIL  token {8}the API refused the operator token: /m);
    const nobody = await runCli(['doctor', '--server', `http://127.0.0.1:${await freePort()}`, '--token', 'x']);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stdout, /^FAIL  reachable {4}no answer from http:\/\/127\.0\.0\.1:\d+: is it running\? \(npm start\)$/m);
  });

  it('warns of devices that accept unsigned software', async () => {
    const careless = await startAgent(ts, root, 'doc-unsigned', { signingPublicKey: undefined as unknown as string, allowUnsigned: true });
    try {
      const r = await eventually(async () => {
        const d = await doctor();
        return d.stdout.includes('warn  devices') ? d : undefined;
      }, 30_000, 'the careless device named');
      assert.match(r.stdout, /^warn  devices {6}doc-unsigned accept unsigned software \(an agent run with --insecure-allow-unsigned\)/m);
      assert.equal(r.code, 0, 'a warning, not a failure');
    } finally {
      await careless.agent.stop();
    }
  });

  it('warns of devices whose clocks are wrong', async () => {
    const skewed = await startAgent(ts, root, 'doc-skewed', { now: () => Date.now() + 2 * 3_600_000 });
    try {
      const r = await eventually(async () => {
        const d = await doctor();
        return d.stdout.includes('wrong clock') ? d : undefined;
      }, 30_000, 'the skewed device named');
      assert.match(r.stdout, /^warn  devices {6}doc-skewed run with a wrong clock \(a minute or more off the server's\)/m);
      assert.equal(r.code, 0, 'a warning, not a failure');
    } finally {
      await skewed.agent.stop();
    }
  });

  it('warns when the clocks disagree: commands and URLs expire by the server\'s', async () => {
    const findings = await diagnose({ server: ts.httpUrl, token: ts.token }, Date.now() - 120_000);
    const clock = findings.find((f) => f.check === 'clock')!;
    assert.equal(clock.verdict, 'warn');
    assert.match(clock.text, /^the server's clock is 1(19|20|21) s ahead of this machine's/);
  });

  it('notes named tokens no one has used for 90 days', async () => {
    const added = await fetch(`${ts.httpUrl}/api/v1/operator-tokens`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'carol' }) });
    assert.equal(added.status, 201);
    const unusedNote = (findings: { check: string; text: string }[]) => findings.find((f) => f.check === 'tokens' && f.text.includes('unused for 90 days'));
    assert.equal(unusedNote(await diagnose({ server: ts.httpUrl, token: ts.token })), undefined, 'just added: nothing to say');
    const later = await diagnose({ server: ts.httpUrl, token: ts.token }, Date.now() + 91 * 86_400_000);
    const note = unusedNote(later);
    assert.ok(note, JSON.stringify(later));
    assert.equal(note.text, 'operator token(s) unused for 90 days: carol (never used); remove what no one uses (updraft token operator remove <name>)');
  });

  it('says when its token is a read-only viewer token, and skips what needs the operator token', async () => {
    const added = await fetch(`${ts.httpUrl}/api/v1/viewer-tokens`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'wall' }) });
    const { token } = (await added.json()) as { token: string };
    const findings = await diagnose({ server: ts.httpUrl, token }, Date.now() + 91 * 86_400_000);
    const line = findings.find((f) => f.check === 'token');
    assert.deepEqual(line, { verdict: 'note', check: 'token', text: 'a read-only viewer token is accepted: the checks of named tokens need the operator token, and are skipped' });
    assert.equal(findings.find((f) => f.text.includes('unused for 90 days')), undefined, 'the token lists are not read');
  });
});
