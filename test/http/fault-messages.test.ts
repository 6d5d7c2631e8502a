/**
 * Faults of the server, as devices and operators see them: storage that fails under a
 * download cuts the transfer and is logged (it used to pass for a device that went away), and
 * a fault's own text (files, tables, hosts) is never told to a device: it gets a generic 5xx,
 * the log the reason. Real server and HTTP for the first; the answering of device requests
 * (`broker/device-request.ts`) for the second.
 */
import assert from 'node:assert/strict';
import { mkdir, rm, truncate } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { answerDeviceRequest } from '../../src/broker/device-request.ts';
import { UpdraftError } from '../../src/errors.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('faults of the server', () => {
  let ts: TestServer;
  let dev: TestClient;
  const logged: string[] = [];

  before(async () => {
    // no memory cache: every download reads storage
    ts = await startTestServer({ flags: { 'download-cache-bytes': 0 }, logger: createLogger({ level: 'warn', write: (line) => logged.push(line) }) });
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('a download that storage cannot read is cut and logged, with the artifact and the reason', async () => {
    const { sha256 } = await addArtifact(ts, '2.0.0', Buffer.alloc(50_000, 7));
    const res = await fetch(`${ts.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ['dev-1'], artifact: 'fw@2.0.0' }) });
    assert.equal(res.status, 201);
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.url !== undefined);
    const url = delta.body.state.software.url as string;
    assert.equal((await fetch(url)).status, 200, 'downloads while storage reads');
    assert.ok(!logged.some((l) => l.includes('cannot be read from storage')));

    // storage breaks under the record: its file cannot be read (a directory in its place: EISDIR)
    const blob = path.join(ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256);
    await rm(blob);
    await mkdir(blob);
    await assert.rejects(async () => {
      const r = await fetch(url);
      await r.arrayBuffer(); // the headers went; the body is cut
    });
    const line = logged.find((l) => l.includes('cannot be read from storage'));
    assert.ok(line, logged.join('\n'));
    assert.match(line, /ERROR \[download\] download cut: the artifact cannot be read from storage artifact=fw@2\.0\.0 device=dev-1 error=.*EISDIR/);
  });

  it('a download whose stored bytes are fewer than the artifact has is cut at once and logged', async () => {
    const { sha256 } = await addArtifact(ts, '3.0.0', Buffer.alloc(200_000, 9));
    const res = await fetch(`${ts.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ['dev-1'], artifact: 'fw@3.0.0' }) });
    assert.equal(res.status, 201);
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.version === '3.0.0' && m.body.state?.software?.url !== undefined);
    // storage lost the second half of the file
    await truncate(path.join(ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256), 100_000);
    // a short body is an error for the client, not a wait for bytes that never come (the
    // connection's keep-alive timeout would end it only seconds later, as if it were fine)
    await assert.rejects(async () => {
      const r = await fetch(delta.body.state.software.url as string);
      assert.equal(r.headers.get('content-length'), '200000');
      await r.arrayBuffer();
    });
    const line = await eventually(async () => logged.find((l) => l.includes('storage holds fewer bytes')), 10_000, 'the log line');
    assert.match(line, /ERROR \[download\] download cut: storage holds fewer bytes than the artifact has \(damaged or truncated\) artifact=fw@3\.0\.0 device=dev-1 sent=100000 expected=200000$/);
  });

  it("tells a device that a fault of the server happened, not the fault's own text; the log has it", async () => {
    const published: { topic: string; payload: string }[] = [];
    const lines: string[] = [];
    const answer = (err: UpdraftError) =>
      answerDeviceRequest(
        {
          deviceId: 'dev-1',
          msg: { topic: 'state/dev-1/job-log', payload: Buffer.from('{"clientToken":"t-1"}'), sender: { kind: 'device', id: 'dev-1' } },
          rejectedTopic: 'state/dev-1/job-log/rejected',
          what: 'job log',
          refusedLevel: 'info',
          publish: async (topic, payload) => void published.push({ topic, payload }),
          logger: createLogger({ level: 'info', write: (l) => lines.push(l) }),
          nowSeconds: () => 1_800_000_000,
        },
        () => Promise.reject(err),
      );
    await answer(new UpdraftError('INTERNAL', 'SQLITE_FULL: database or disk is full (/var/lib/updraft/updraft.db)'));
    await answer(new UpdraftError('CONFLICT', 'job j-1 keeps the logs of 1000 devices already'));
    assert.deepEqual(published.map((p) => JSON.parse(p.payload)), [
      { code: 500, message: 'internal error (500): the server could not answer; try again later', timestamp: 1_800_000_000, clientToken: 't-1' },
      // a refusal says what to change: told as it is
      { code: 409, message: 'job j-1 keeps the logs of 1000 devices already', timestamp: 1_800_000_000, clientToken: 't-1' },
    ]);
    assert.match(lines[0]!, /ERROR job log failed deviceId=dev-1 error="SQLITE_FULL: database or disk is full \(\/var\/lib\/updraft\/updraft\.db\)"/);
  });
});
