/**
 * `GET /api/v1/health/findings` (http/health-routes.ts): doctor's fleet-level findings computed
 * on a real server from devices that reported over MQTT: devices accepting unsigned software,
 * with wrong clocks and on the CA `ca drop-previous` removed (revoked ones apart), each with its
 * fleet query and its count over the whole fleet; the same text as `updraft doctor`'s lines; a
 * viewer token reads it; one computation is answered from for a while (a device that reports
 * later is counted only once the answer's time is up).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { runCli } from '../helpers/cli.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { expiredCa } from '../security/ca-rollover-fixture.ts';

type Finding = { verdict: string; check: string; text: string; query?: string; count?: number };
type Answer = { generatedAt: number; keptSeconds: number; scanned: number; findings: Finding[] };

const DROPPED = 'CN=Expired device CA, O=Updraft';

describe('GET /api/v1/health/findings', () => {
  let ts: TestServer;
  const clients: TestClient[] = [];
  /** Registers `id`, connects it over MQTT and has it report `agent` as its agent would. */
  const report = async (id: string, agent: Record<string, unknown>) => {
    const c = await connectDevice(ts, id);
    clients.push(c);
    await c.subscribe(`state/${id}/update/#`);
    const answer = await c.request(`state/${id}/update`, { state: { reported: { agent } } });
    assert.equal(answer.topic, `state/${id}/update/accepted`, `${id}'s report is accepted`);
  };
  const findings = async (token = ts.token): Promise<Answer> => {
    const res = await fetch(`${ts.httpUrl}/api/v1/health/findings`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, `the findings are answered: ${res.status}`);
    return (await res.json()) as Answer;
  };

  before(async () => {
    ts = await startTestServer();
    // a CA `ca drop-previous` set aside: the server names its subject (GET /api/v1/keys droppedCaSubject)
    await writeFile(caPaths(ts.dataDir).dropped, expiredCa('x').ca);
    for (const n of [1, 2, 3, 4, 5, 6]) await report(`u-${n}`, { trust: 'unsigned' });
    await report('c-1', { trust: 'key', clockOffsetSeconds: 120 });
    await report('c-2', { trust: 'key', clockOffsetSeconds: -300 });
    for (const id of ['d-1', 'd-2', 'd-3']) await report(id, { trust: 'key', certificateIssuer: DROPPED });
    assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/d-3/revoke')).status, 200, 'd-3 revoked');
    await report('fine-1', { trust: 'key', clockOffsetSeconds: 2 });
  });
  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await ts.close();
  });

  it('answers one computation for a while: a device that reports meanwhile is counted later', async () => {
    // the first request of the suite: computed now, so the requests below fall well within its 30 s
    const first = await findings();
    await report('u-7', { trust: 'unsigned' });
    const [again, together] = await Promise.all([findings(), findings()]);
    assert.equal(again.generatedAt, first.generatedAt, 'the kept answer');
    assert.equal(together.generatedAt, first.generatedAt, 'concurrent requests share it');
    assert.equal(again.findings.find((f) => f.query === 'reported.agent.trust = unsigned')?.count, 6, 'u-7 not counted yet');
    assert.equal(again.keptSeconds, 30, 'kept 30 s');
    // gone again, so that the checks below count the same whether they read this answer or a new one
    assert.equal((await apiJson(ts, 'DELETE', '/api/v1/devices/u-7')).status, 200, 'u-7 deleted');
  });

  it('counts the devices of each finding over the whole fleet, with the query that lists them', async () => {
    const a = await findings();
    assert.equal(a.scanned, 12, 'every registered device read');
    const unsigned = a.findings.find((f) => f.query === 'reported.agent.trust = unsigned');
    assert.ok(unsigned, `a finding for unsigned software: ${JSON.stringify(a.findings)}`);
    assert.deepEqual([unsigned.verdict, unsigned.check, unsigned.count], ['warn', 'devices', 6], 'a warning counting the 6 devices');
    assert.match(unsigned.text, /^u-1, u-2, u-3, u-4, u-5, … accept unsigned software/, 'the first five named, then …');
    const clock = a.findings.find((f) => f.text.includes('run with a wrong clock'));
    assert.deepEqual([clock?.verdict, clock?.count, clock?.text.slice(0, 8)], ['warn', 2, 'c-1, c-2'], 'the two devices with wrong clocks, not fine-1');
    const dropped = a.findings.find((f) => f.check === 'CA' && f.text.includes('updraft ca drop-previous removed'));
    assert.ok(dropped, `a finding for the dropped CA: ${JSON.stringify(a.findings)}`);
    assert.equal(dropped.count, 2, 'the revoked d-3 is not counted: refused anyway');
    assert.equal(dropped.query, `reported.agent.certificateIssuer = "${DROPPED}"`, 'the query that lists them');
    assert.match(dropped.text, /^2 device\(s\) \(d-1, d-2\) last reported a client certificate of the CA updraft ca drop-previous removed/, 'named as doctor names them');
    assert.deepEqual(a.findings.filter((f) => f.check === 'reachable' || f.check === 'token' || f.check === 'clock' || f.check === 'ready'), [], "nothing of a client's viewpoint");
    assert.ok(a.findings.some((f) => f.check === 'signing key') && a.findings.some((f) => f.check === 'CA' && f.verdict === 'ok'), 'the key and CA checks too');
  });

  it('says what updraft doctor says, line for line', async () => {
    const a = await findings();
    const r = await runCli(['doctor', '--server', ts.httpUrl, '--token', ts.token, '--json']);
    const cli = JSON.parse(r.stdout) as Finding[];
    for (const f of a.findings.filter((x) => x.query !== undefined)) {
      assert.ok(
        cli.some((c) => c.check === f.check && c.text === f.text),
        `doctor prints the server's line: ${f.text}`,
      );
    }
  });

  it('is read with a viewer token', async () => {
    const added = await runCli(['token', 'viewer', 'add', 'wall', '--json', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(added.code, 0, added.stderr);
    const viewer = (JSON.parse(added.stdout) as { token: string }).token;
    const a = await findings(viewer);
    assert.ok(a.findings.some((f) => f.count === 6), 'the same findings');
  });

});
