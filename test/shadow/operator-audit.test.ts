/**
 * The operator's writes over MQTT are in the audit trail (docs/security.md, Who changed
 * what): QA sent software to a device by writing `desired.software` as the operator over
 * MQTT; the device downloaded it and reported SUCCESS, and the server's log said nothing.
 * Real server, the embedded broker over TCP, the operator's and a device's MQTT clients.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { createLogger } from '../../src/util/logger.ts';

const SOFTWARE = { name: 'fw', version: '2.0.0', sha256: 'bc8cf646ed651c1212ef15e19f499e84b1bb40e2d0907217cf31b42514343039', size: 300000, jobId: 'qa-mqtt-job-1' };

describe("audit lines of the operator's MQTT writes", () => {
  const lines: string[] = [];
  let ts: TestServer;
  let op: TestClient;
  let dev: TestClient;
  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await registerDevice(ts, 'dev-2');
    dev = await connectDevice(ts, 'dev-1');
    await dev.subscribe('state/dev-1/#');
    op = await TestClient.connect(ts.mqttUrl, 'op-audit', { username: 'operator', password: ts.token });
    await op.subscribe('state/+/+/accepted', 'state/+/+/rejected', 'state/+/shadow/+/+/accepted', 'state/+/shadow/+/+/rejected', '$aws/things/dev-2/shadow/update/+');
  });
  after(async () => {
    await dev.end();
    await op.end();
    await ts.close();
  });
  /** The operator's MQTT audit lines written since `from`. */
  const audit = (from: number) => lines.slice(from).filter((l) => l.includes('operator mqtt'));

  it('logs desired.software sent to a device: its id, the build, the job id and who, never the digest or a URL', async () => {
    const report = await dev.request('state/dev-1/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    assert.equal(report.topic, 'state/dev-1/update/accepted');
    const from = lines.length;
    const answer = await op.request('state/dev-1/update', { state: { desired: { software: SOFTWARE } } });
    assert.equal(answer.topic, 'state/dev-1/update/accepted');
    const got = audit(from);
    assert.equal(got.length, 1, lines.slice(from).join('\n'));
    assert.match(got[0]!, new RegExp(`INFO {2}\\[replica\\] operator mqtt op=update deviceId=dev-1 shadow="" version=${answer.body.version} by=operator desired=software software=fw@2\\.0\\.0 jobId=qa-mqtt-job-1$`));
    // the device got its command (a signed URL): the line names neither the URL nor the digest
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.jobId === SOFTWARE.jobId);
    assert.match(String(delta.body.state.software.url), /^http/, 'the device got the update command');
    assert.ok(!got[0]!.includes('http') && !lines.some((l) => l.includes(SOFTWARE.sha256) || l.includes(ts.token)), 'no URL, digest or token in the log');
  });

  it("logs the operator's write of a device's reported state, which the job tracker takes as the device's report", async () => {
    const from = lines.length;
    // a SUCCESS written over MQTT as the operator: the tracker ends the device's job with it (execution-tracker.ts)
    const forged = await op.request('state/dev-1/update', { state: { reported: { software: { name: 'fw', version: '2.0.0', status: 'SUCCESS', jobId: SOFTWARE.jobId }, note: 'hidden-value' } } });
    assert.equal(forged.topic, 'state/dev-1/update/accepted');
    const both = await op.request('state/dev-2/update', { state: { desired: { led: 'off' }, reported: { led: 'on' } } });
    assert.equal(both.topic, 'state/dev-2/update/accepted');
    const cleared = await op.request('state/dev-2/update', { state: { reported: null } });
    assert.equal(cleared.topic, 'state/dev-2/update/accepted');
    const got = audit(from);
    assert.equal(got.length, 3, lines.slice(from).join('\n'));
    assert.match(got[0]!, new RegExp(`operator mqtt op=update deviceId=dev-1 shadow="" version=${forged.body.version} by=operator reported=software,note reportedSoftware=fw@2\\.0\\.0 reportedStatus=SUCCESS reportedJobId=qa-mqtt-job-1$`));
    assert.match(got[1]!, new RegExp(`operator mqtt op=update deviceId=dev-2 shadow="" version=${both.body.version} by=operator desired=led reported=led$`));
    assert.match(got[2]!, new RegExp(`operator mqtt op=update deviceId=dev-2 shadow="" version=${cleared.body.version} by=operator reported=null$`));
    assert.ok(!lines.some((l) => l.includes('hidden-value') || l.includes('=on') || l.includes('=off')), 'no reported or desired value in the log');
  });

  it("logs no line for a device's own reports and requests", async () => {
    const from = lines.length;
    const ok = await dev.request('state/dev-1/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'DOWNLOADING', jobId: SOFTWARE.jobId } }, desired: { led: 'on' } } });
    assert.equal(ok.topic, 'state/dev-1/update/accepted');
    assert.equal((await dev.request('state/dev-1/shadow/cfg/update', { state: { desired: { mode: 'a' } } })).topic, 'state/dev-1/shadow/cfg/update/accepted');
    assert.equal((await dev.request('state/dev-1/shadow/cfg/delete', {})).topic, 'state/dev-1/shadow/cfg/delete/accepted');
    assert.deepEqual(audit(from), []);
  });

  it("logs the operator's other desired keys, a named shadow, a removal, the AWS IoT door and a delete; not a refused write", async () => {
    const from = lines.length;
    const named = await op.request('state/dev-2/shadow/cfg/update', { state: { desired: { mode: 'eco', secretish: 'do-not-log-me' } } });
    assert.equal(named.topic, 'state/dev-2/shadow/cfg/update/accepted');
    const removed = await op.request('state/dev-1/update', { state: { desired: { software: null } } });
    assert.equal(removed.topic, 'state/dev-1/update/accepted');
    const cleared = await op.request('state/dev-1/update', { state: { desired: null } });
    assert.equal(cleared.topic, 'state/dev-1/update/accepted');
    // the AWS IoT door is the same write
    const aws = await op.request('$aws/things/dev-2/shadow/update', { state: { desired: { fan: 2 } } });
    assert.equal(aws.topic, '$aws/things/dev-2/shadow/update/accepted');
    const deleted = await op.request('state/dev-2/shadow/cfg/delete', {});
    assert.equal(deleted.topic, 'state/dev-2/shadow/cfg/delete/accepted');
    // refused (no such device): nothing changed, so no audit line (the rejection has its own)
    assert.equal((await op.request('state/ghost/update', { state: { desired: { x: 1 } } })).topic, 'state/ghost/update/rejected');
    const got = audit(from);
    assert.equal(got.length, 5, lines.slice(from).join('\n'));
    assert.match(got[0]!, new RegExp(`operator mqtt op=update deviceId=dev-2 shadow=cfg version=${named.body.version} by=operator desired=mode,secretish$`));
    assert.match(got[1]!, new RegExp(`operator mqtt op=update deviceId=dev-1 shadow="" version=${removed.body.version} by=operator desired=software software=null$`));
    assert.match(got[2]!, new RegExp(`operator mqtt op=update deviceId=dev-1 shadow="" version=${cleared.body.version} by=operator desired=null$`));
    assert.match(got[3]!, new RegExp(`operator mqtt op=update deviceId=dev-2 shadow="" version=${aws.body.version} by=operator desired=fan$`));
    assert.match(got[4]!, new RegExp(`operator mqtt op=delete deviceId=dev-2 shadow=cfg version=${deleted.body.version} by=operator$`));
    assert.ok(!lines.some((l) => l.includes('do-not-log-me') || l.includes('=eco')), 'no desired value in the log');
  });
});
