/**
 * The CLI's one-shot reads (`device list`, `job show`, ...) wait through a server that cannot
 * answer for now (429, 502, 503, 504 and its `Retry-After`) for up to UPDRAFT_RETRY_FOR seconds
 * (30 by default), saying so once, instead of ending with exit 1 at the first 503 (a CI gate
 * polling `job show` failed on a 10-second PostgreSQL restart). Writes are never sent twice, a
 * server never reached is not waited for, and UPDRAFT_RETRY_FOR=0 fails at once.
 *
 * The first part runs the real CLI against a small HTTP server standing in for the API (it is
 * the client under test: the stand-in answers 503 on cue and counts what it was asked); the
 * second against a real server whose PostgreSQL stops answering (a TCP relay in front of it is
 * cut, then joined again: the network between them, outside the system) under a running read.
 */
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { runCli, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = 't'.repeat(40);
const DOWN = { status: 503, headers: { 'retry-after': '1' }, body: { error: { code: 'UNAVAILABLE', message: 'unavailable (503): the server cannot reach its storage just now; try again in 1 s' } } };
const DEVICES = { status: 200, body: { items: [{ deviceId: 'dev-1', online: true, reported: { version: '1.0.0', status: 'IDLE' } }] } };

type Answer = { status: number; headers?: Record<string, string>; body: unknown };

/** An HTTP server standing in for the API: answers each request with the next of `script` (the last one repeats), and records them. */
async function standIn(script: Answer[]): Promise<{ url: string; asked: { method: string; url: string; at: number }[]; close(): Promise<void> }> {
  const asked: { method: string; url: string; at: number }[] = [];
  const server: Server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    asked.push({ method: req.method!, url: req.url!, at: Date.now() });
    const a = script[Math.min(asked.length - 1, script.length - 1)]!;
    req.resume();
    req.on('end', () => res.writeHead(a.status, { 'content-type': 'application/json', ...a.headers }).end(JSON.stringify(a.body)));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, asked, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const saidOnce = (stderr: string) => stderr.match(/^updraft: the server cannot answer for now \(.*\); trying again for up to [\d.]+ s$/gm) ?? [];

describe('CLI reads against a server that cannot answer for now (a stand-in API)', () => {
  it('doctor does not wait: it reports a server that cannot answer as it is now (one request), not as a token refused', async () => {
    const api = await standIn([DOWN]);
    try {
      const r = await runCli(['doctor', '--server', api.url, '--token', TOKEN], { env: { UPDRAFT_RETRY_FOR: '' } });
      assert.deepEqual(saidOnce(r.stderr), [], r.stderr);
      assert.equal(api.asked.filter((a) => a.url === '/api/v1/keys').length, 1, api.asked.map((a) => a.url).join(' '));
      assert.match(r.stdout, /^FAIL  api {10}the API cannot answer: unavailable \(503\)/m);
      assert.doesNotMatch(r.stdout, /operator token/, 'a 503 is not a token refused');
    } finally {
      await api.close();
    }
  });

  it('device list waits through two 503s, honouring Retry-After, says so once, and prints the answer', async () => {
    const api = await standIn([DOWN, DOWN, DEVICES]);
    try {
      const r = await runCli(['device', 'list', '--server', api.url, '--token', TOKEN], { env: { UPDRAFT_RETRY_FOR: '' } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^dev-1  online   1\.0\.0  IDLE$/m);
      assert.deepEqual(saidOnce(r.stderr), ['updraft: the server cannot answer for now (unavailable (503): the server cannot reach its storage just now; try again in 1 s); trying again for up to 30 s']);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
      assert.deepEqual(api.asked.map((a) => `${a.method} ${a.url.split('?')[0]}`), ['GET /api/v1/devices', 'GET /api/v1/devices', 'GET /api/v1/devices']);
      // Retry-After: 1 is honoured (a lower bound: a slow machine only waits longer)
      for (let i = 1; i < api.asked.length; i++) assert.ok(api.asked[i]!.at - api.asked[i - 1]!.at >= 950, `pause ${i}: ${api.asked[i]!.at - api.asked[i - 1]!.at} ms`);
    } finally {
      await api.close();
    }
  });

  it('waits through 429, 502 and 504 as well, and a 502 without a JSON body or Retry-After', async () => {
    const api = await standIn([
      { status: 429, headers: { 'retry-after': '0' }, body: { error: { code: 'TOO_MANY_REQUESTS', message: 'too many requests' } } },
      { status: 502, body: 'not json' },
      { status: 504, headers: { 'retry-after': '0' }, body: {} },
      { status: 200, body: { items: [] } },
    ]);
    try {
      const r = await runCli(['artifact', 'list', '--server', api.url, '--token', TOKEN]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(saidOnce(r.stderr).length, 1, r.stderr);
      assert.match(r.stderr, /\(too many requests\)/);
      assert.equal(api.asked.length, 4);
    } finally {
      await api.close();
    }
  });

  it('fails as before once UPDRAFT_RETRY_FOR has passed: the server\'s message, exit 1', async () => {
    const api = await standIn([DOWN]);
    try {
      const r = await runCli(['job', 'show', 'job-1', '--server', api.url, '--token', TOKEN], { env: { UPDRAFT_RETRY_FOR: '2' } });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'updraft: the server cannot answer for now (unavailable (503): the server cannot reach its storage just now; try again in 1 s); trying again for up to 2 s\nupdraft: error: unavailable (503): the server cannot reach its storage just now; try again in 1 s\n');
      // asked at 0, about 1 and 2 s: more than once, and not beyond the bound's worth
      assert.ok(api.asked.length >= 2 && api.asked.length <= 4, `${api.asked.length} requests`);
    } finally {
      await api.close();
    }
  });

  it('UPDRAFT_RETRY_FOR=0 fails at the first 503, as before', async () => {
    const api = await standIn([DOWN, DEVICES]);
    try {
      const r = await runCli(['device', 'list', '--server', api.url, '--token', TOKEN], { env: { UPDRAFT_RETRY_FOR: '0' } });
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'updraft: error: unavailable (503): the server cannot reach its storage just now; try again in 1 s\n');
      assert.equal(api.asked.length, 1);
    } finally {
      await api.close();
    }
  });

  it('never sends a write twice: a POST answered 503 fails at once', async () => {
    const api = await standIn([DOWN, { status: 200, body: {} }]);
    try {
      const r = await runCli(['job', 'pause', 'job-1', '--server', api.url, '--token', TOKEN]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr, 'updraft: error: unavailable (503): the server cannot reach its storage just now; try again in 1 s\n');
      assert.deepEqual(api.asked.map((a) => `${a.method} ${a.url}`), ['POST /api/v1/jobs/job-1/pause']);
    } finally {
      await api.close();
    }
  });

  it('does not wait for an answer that will not change (404)', async () => {
    const api = await standIn([{ status: 404, body: { error: { code: 'NOT_FOUND', message: 'job job-9 does not exist' } } }, DEVICES]);
    try {
      const r = await runCli(['job', 'show', 'job-9', '--server', api.url, '--token', TOKEN]);
      assert.equal(r.code, 2);
      assert.equal(r.stderr, 'updraft: error: job job-9 does not exist\n');
      assert.equal(api.asked.length, 1);
    } finally {
      await api.close();
    }
  });

  it('job watch keeps its own waiting: said once its own way, not the reads\' way as well', async () => {
    const view = (status: string) => ({ status: 200, body: { job: { jobId: 'job-1', status, progress: {} }, counts: {}, waves: [], percentDone: status === 'COMPLETED' ? 100 : 0, total: 0 } });
    const api = await standIn([view('IN_PROGRESS'), DOWN, DOWN, view('COMPLETED')]);
    try {
      const r = await runCli(['job', 'watch', 'job-1', '--interval', '100', '--server', api.url, '--token', TOKEN]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^job job-1 COMPLETED/);
      assert.deepEqual(saidOnce(r.stderr), [], r.stderr);
      assert.equal(r.stderr.match(/updraft: the server cannot answer for now \(unavailable \(503\): .*\); watching on\n/g)?.length, 1, r.stderr);
      assert.equal(r.stderr.match(/updraft: the server answers again\n/g)?.length, 1, r.stderr);
      assert.equal(api.asked.length, 4);
    } finally {
      await api.close();
    }
  });

  it('fails at once when the server was never reached (nothing listens: not running)', async () => {
    const port = await freePort();
    const r = await runCli(['device', 'list', '--server', `http://127.0.0.1:${port}`, '--token', TOKEN]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^updraft: error: cannot reach the Updraft server at http:\/\/127\.0\.0\.1:\d+: is it running\? \(npm start\)\n$/);
  });

  it('refuses a bad UPDRAFT_RETRY_FOR with one line, before asking anything', async () => {
    const api = await standIn([DEVICES]);
    try {
      for (const bad of ['soon', '-1', '30s']) {
        const r = await runCli(['device', 'list', '--server', api.url, '--token', TOKEN], { env: { UPDRAFT_RETRY_FOR: bad } });
        assert.equal(r.code, 2, bad);
        assert.equal(r.stderr, `updraft: error: UPDRAFT_RETRY_FOR must be the seconds a read waits for a server that cannot answer for now, 0 or more (0: not at all), not "${bad}"\n`);
      }
      assert.equal(api.asked.length, 0);
    } finally {
      await api.close();
    }
  });
});

describe('CLI reads while the server\'s PostgreSQL restarts (a real server)', async () => {
  const pgResult = await startTestPostgres();
  const skip = pgResult.ok ? false : unavailable(pgResult, 'PostgreSQL restart under a CLI read');
  let link: TcpRelay | undefined;
  let ts: TestServer | undefined;
  let jobId = '';

  before(async () => {
    if (!pgResult.ok) return;
    const db = new URL(await pgResult.server.createDatabase());
    link = await startRelay({ host: '127.0.0.1', port: Number(db.port) });
    db.port = String(link.port);
    ts = await startTestServer({ flags: { db: db.toString() } });
    await registerDevice(ts, 'dev-p');
    const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('fw 2.0.0')) });
    assert.equal(up.status, 201);
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    ({ job: { jobId } } = await new ApiClient({ server: ts.httpUrl, token: ts.token }).call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['dev-p'] }, plan: { startAt: tomorrow } }));
  });
  after(async () => {
    await link?.up();
    await ts?.close();
    await link?.stop();
    if (pgResult.ok) await pgResult.server.stop().catch(() => undefined);
  });

  for (const [name, args, expected] of [
    ['device list', () => ['device', 'list'], /^dev-p {2}offline/m],
    ['job show', () => ['job', 'show', jobId], /SCHEDULED/],
  ] as [string, () => string[], RegExp][]) {
    it(`${name} waits for the database to answer again, then prints the answer (exit 0)`, { skip, timeout: 60_000 }, async () => {
      await link!.down();
      const cli = startCli([...args(), '--server', ts!.httpUrl, '--token', ts!.token]);
      try {
        await cli.waitFor(/updraft: the server cannot answer for now \(PostgreSQL: .+\); trying again for up to 30 s\n/);
        await link!.up();
        assert.equal(await cli.kill('SIGCONT'), 0, cli.output()); // SIGCONT: waits for its own exit
        assert.match(cli.output(), expected);
        assert.equal(saidOnce(cli.output()).length, 1, cli.output());
      } finally {
        await link!.up();
        await cli.kill('SIGKILL');
      }
    });
  }
});
