/**
 * `updraft job create` and `updraft deploy` send an Idempotency-Key and, when no answer comes,
 * send the same request again with it (src/cli/api-client.ts): a connection that drops after
 * the server created the job makes one job, not two. The real CLI, a real server, and between
 * them a TCP proxy (outside the system: the network) that passes the first request on and
 * drops its answer, closing the connection as the server's answer arrives, as a load balancer
 * or a flaky link does; later connections are carried whole. Also: a server never reached is
 * said at once, without tries; `--idempotency-key` run twice makes one job.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** A proxy to `port` that drops the answers of the first `drop` connections (the request reaches the server), then carries connections whole. */
async function droppingProxy(port: number, drop: number): Promise<{ url: string; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const dropping = connections++ < drop;
    const upstream = net.connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream);
    if (dropping) {
      // the server handled the request and answers: the answer is lost, the connection cut
      upstream.once('data', () => {
        client.destroy();
        upstream.destroy();
      });
    } else {
      upstream.pipe(client);
    }
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: own } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${own}`,
    connections: () => connections,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

describe('CLI creations sent again with their Idempotency-Key', () => {
  let ts: TestServer;
  const jobCount = async () => {
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs?limit=500`, { headers: { authorization: `Bearer ${ts.token}` } });
    return ((await res.json()) as { items: unknown[] }).items.length;
  };

  before(async () => {
    ts = await startTestServer();
    const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('two')) });
    assert.equal(up.status, 201);
    for (const id of ['d1', 'd2']) await registerDevice(ts, id);
  });
  after(async () => {
    await ts?.close();
  });

  for (const [name, args] of [
    ['job create', ['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'd1', '--device', 'd2', '--start-at', '2999-01-01T00:00:00Z', '--json']],
    ['deploy', ['deploy', '--device', 'd1', '--artifact', 'fw@2.0.0', '--json']],
  ] as const) {
    it(`${name}: the first answer lost after the server created the job; the try again answers that job, and one job is made`, async () => {
      const proxy = await droppingProxy(Number(new URL(ts.httpUrl).port), 1);
      try {
        const before = await jobCount();
        const r = await runCli([...args, '--server', proxy.url, '--token', ts.token]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(await jobCount(), before + 1, 'one job');
        const out = JSON.parse(r.stdout) as { job: { jobId: string } };
        const show = await fetch(`${ts.httpUrl}/api/v1/jobs/${out.job.jobId}`, { headers: { authorization: `Bearer ${ts.token}` } });
        assert.equal(show.status, 200, 'the job answered is the one created');
        assert.equal(proxy.connections(), 2);
        const lines = r.stderr.split('\n').filter(Boolean);
        assert.equal(lines.length, 2, r.stderr);
        assert.match(lines[0]!, /^updraft: no answer to POST \/api\/v1\/(jobs|deployments) \(.*\); sending it again with the same Idempotency-Key [0-9a-f-]{36}, which creates one job at most \(try 2 of 4\)$/);
        assert.equal(lines[1], 'updraft: an earlier try had created it; this is that job (Idempotent-Replayed), none other was created');
      } finally {
        await proxy.close();
      }
    });
  }

  it('says nothing more when the first try is answered', async () => {
    const r = await runCli(['deploy', '--device', 'd2', '--artifact', 'fw@2.0.0', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /^job [0-9a-f-]{36}: fw@2\.0\.0 to 1 device\(s\)\n$/);
  });

  it('--idempotency-key: a script run twice with its key makes one job; a bad key is refused before sending', async () => {
    const before = await jobCount();
    const run = () => runCli(['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'd2', '--start-at', '2999-01-01T00:00:00Z', '--idempotency-key', 'nightly-2999-01-01', '--json', '--server', ts.httpUrl, '--token', ts.token]);
    const [a, b] = [await run(), await run()];
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(JSON.parse(a.stdout).job.jobId, JSON.parse(b.stdout).job.jobId);
    assert.equal(await jobCount(), before + 1);
    const bad = await runCli(['deploy', '--device', 'd2', '--artifact', 'fw@2.0.0', '--idempotency-key', 'two words', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /--idempotency-key must be 1 to 255 visible ASCII characters/);
    assert.equal(await jobCount(), before + 1);
  });

  it('a server never reached is said at once, with no try again', async () => {
    const port = await freePort();
    const r = await runCli(['deploy', '--device', 'd1', '--artifact', 'fw@2.0.0', '--server', `http://127.0.0.1:${port}`, '--token', ts.token]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^updraft: error: cannot reach the Updraft server at http:\/\/127\.0\.0\.1:\d+: is it running\? \(npm start\)\n$/);
  });
});
