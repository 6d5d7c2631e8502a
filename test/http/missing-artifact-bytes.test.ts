/**
 * A build whose record is stored but whose bytes are not in the artifact storage (soak QA: the
 * blob file removed, the S3 object deleted, or several instances on one PostgreSQL each with
 * its own artifact directory). Real server, real HTTP downloads by the URL a device was sent,
 * the bytes removed under it: the device is answered 503 with Retry-After (it tries again),
 * the server writes one ERROR per build per 30 s naming the build, its digest and the
 * storage, and counts it (`downloads.missing`, `updraft_downloads_total{result="missing"}`),
 * and `updraft doctor` warns. On a real PostgreSQL without --blob the server warns at start
 * that the instances must share the artifact storage, and doctor says so too.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { parseS3Url } from '../../src/artifacts/s3-url.ts';
import { diagnose } from '../../src/cli/doctor-command.ts';
import { createLogger } from '../../src/util/logger.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const SHARED_WARNING = 'every instance must share the artifact storage (--blob s3://...), or a build added through one instance cannot be downloaded through another';

/** A server logging at info into `logged`, a device connected, and the helpers of the cases. */
function fixture(flags: () => Record<string, unknown>) {
  const f = {
    ts: undefined as unknown as TestServer,
    dev: undefined as unknown as TestClient,
    logged: [] as string[],
    async start() {
      f.ts = await startTestServer({ flags: { 'download-cache-bytes': 80_000, ...flags() }, logger: createLogger({ level: 'info', write: (l) => f.logged.push(l) }) });
      f.dev = await connectIdleDevice(f.ts, 'dev-1');
    },
    async close() {
      await f.dev?.end();
      await f.ts?.close();
    },
    /** Adds fw@version and deploys it to dev-1: its digest and the download URL the device was sent. */
    async build(version: string, size: number) {
      const { sha256 } = await addArtifact(f.ts, version, Buffer.alloc(size, version.charCodeAt(0)));
      await deploy(f.ts, ['dev-1'], `fw@${version}`);
      const delta = await f.dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.version === version && m.body.state?.software?.url !== undefined);
      return { sha256, url: delta.body.state.software.url as string };
    },
    async metrics(accept?: string) {
      const r = await fetch(`${f.ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${f.ts.token}`, ...(accept ? { accept } : {}) } });
      assert.equal(r.status, 200);
      return r;
    },
    async missing() {
      return ((await (await f.metrics()).json()) as { downloads: { missing: number; unavailable: number; served: number; refused: number } }).downloads;
    },
    errors: (text: string) => f.logged.filter((l) => / ERROR /.test(l) && l.includes(text)),
  };
  return f;
}

describe('a job for a build whose bytes are missing from the artifact storage', () => {
  const f = fixture(() => ({}));
  before(() => f.start());
  after(() => f.close());

  it('is refused with 409 naming the build, by POST /api/v1/jobs, its dry run and a deployment; nothing is created', async () => {
    const { sha256 } = await addArtifact(f.ts, '5.0.0', Buffer.alloc(3_000, 5));
    await rm(path.join(f.ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256));
    const api = (p: string, body: unknown) => fetch(`${f.ts.httpUrl}${p}`, { method: 'POST', headers: { authorization: `Bearer ${f.ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const job = { artifact: 'fw@5.0.0', targets: { devices: ['dev-1'] } };
    for (const [p, body] of [['/api/v1/jobs', job], ['/api/v1/jobs/preview', job], ['/api/v1/deployments', { devices: ['dev-1'], artifact: 'fw@5.0.0' }]] as const) {
      const r = await api(p, body);
      const answer = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 409, `${p}: ${JSON.stringify(answer)}`);
      assert.equal(answer.error.code, 'CONFLICT');
      assert.match(answer.error.message, new RegExp(`^the bytes of artifact fw@5\\.0\\.0 \\(sha256 ${sha256.slice(0, 12)}…\\) are not in this server's artifact storage: restore them`), p);
    }
    const versions = async () => ((await (await fetch(`${f.ts.httpUrl}/api/v1/jobs`, { headers: { authorization: `Bearer ${f.ts.token}` } })).json()) as { items: { artifactName: string; artifactVersion: string }[] }).items.map((j) => `${j.artifactName}@${j.artifactVersion}`);
    assert.deepEqual(await versions(), [], 'no job created');
    // a build whose bytes are there is taken as before
    await addArtifact(f.ts, '5.0.1', Buffer.alloc(3_000, 6));
    assert.equal((await api('/api/v1/jobs', { ...job, artifact: 'fw@5.0.1' })).status, 201);
    assert.deepEqual(await versions(), ['fw@5.0.1']);
  });
});

describe('a download of a build whose bytes are missing from the artifact directory', () => {
  const f = fixture(() => ({}));
  before(() => f.start());
  after(() => f.close());

  for (const [what, version, size] of [['streamed from storage', '2.0.0', 40_000], ['loaded into memory (the cache)', '3.0.0', 2_000]] as const) {
    it(`${what}: answered 503 with Retry-After, one ERROR naming the build and the storage, counted`, async () => {
      const { sha256, url } = await f.build(version, size);
      assert.equal((await fetch(url, { method: 'HEAD' })).status, 200, 'the URL is good');
      await rm(path.join(f.ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256));
      const before = await f.missing();

      const first = await fetch(url);
      const body = (await first.json()) as { error: { code: string; message: string } };
      assert.equal(first.status, 503, JSON.stringify(body));
      assert.equal(first.headers.get('retry-after'), '5');
      assert.equal(body.error.code, 'UNAVAILABLE');
      assert.match(body.error.message, new RegExp(`fw@${version} cannot be served just now: its bytes are not in this server's artifact storage`));
      // a wave of the fleet asking for it: one line, the others counted in the next
      const again = await Promise.all([1, 2, 3].map(async () => (await fetch(url)).status));
      assert.deepEqual(again, [503, 503, 503]);

      const lines = f.errors(`artifact=fw@${version} `);
      assert.equal(lines.length, 1, f.logged.join('\n'));
      assert.match(lines[0]!, /ERROR \[download\] download answered 503: the artifact's bytes are missing from artifact storage; restore them/);
      assert.ok(lines[0]!.includes(`sha256=${sha256.slice(0, 12)} `), lines[0]);
      assert.ok(lines[0]!.includes(`storage="artifact directory ${path.join(path.resolve(f.ts.dataDir), 'artifacts')}"`), lines[0]);

      const after = await f.missing();
      assert.deepEqual(
        { missing: after.missing - before.missing, unavailable: after.unavailable - before.unavailable, served: after.served - before.served, refused: after.refused - before.refused },
        { missing: 4, unavailable: 0, served: 0, refused: 0 },
      );
      const text = await (await f.metrics('text/plain')).text();
      assert.ok(text.includes(`updraft_downloads_total{result="missing"} ${after.missing}\n`), text);
    });
  }

  it('is named by updraft doctor; an instance on the embedded store is not warned of sharing', async () => {
    const findings = await diagnose({ server: f.ts.httpUrl, token: f.ts.token });
    const artifacts = findings.filter((x) => x.check === 'artifacts');
    assert.equal(artifacts.length, 1, JSON.stringify(findings));
    assert.equal(artifacts[0]!.verdict, 'warn');
    assert.match(artifacts[0]!.text, /^8 download\(s\) answered 503 since the start because a stored build's bytes are missing from artifact storage/);
    assert.equal(f.logged.filter((l) => l.includes(SHARED_WARNING)).length, 0);
  });
});

describe('a download of a build whose S3 object was deleted', () => {
  let s3: RestartableS3;
  const f = fixture(() => ({ blob: s3.blobUrl('missing-bytes') }));
  before(async () => {
    s3 = await startRestartableS3();
    await f.start();
  });
  after(async () => {
    await f.close();
    await s3?.close();
  });

  it('is answered 503, logged at ERROR naming the bucket, and counted', async () => {
    const { sha256, url } = await f.build('2.0.0', 40_000);
    const bucket = new S3BlobStore(parseS3Url(s3.blobUrl('missing-bytes')));
    await bucket.start();
    assert.equal(await bucket.delete(sha256), true);
    await bucket.stop();
    const r = await fetch(url);
    await r.arrayBuffer();
    assert.equal(r.status, 503);
    const lines = f.errors('artifact=fw@2.0.0 ');
    assert.equal(lines.length, 1, f.logged.join('\n'));
    assert.ok(lines[0]!.includes('storage="bucket s3://missing-bytes/"'), lines[0]);
    assert.equal((await f.missing()).missing, 1);
  });
});

const pgResult = await startTestPostgres();
after(() => (pgResult.ok ? pgResult.server.stop() : undefined));

describe('an instance on a shared PostgreSQL store with its own artifact directory', () => {
  if (!pgResult.ok) {
    const message = unavailable(pgResult, 'PostgreSQL without --blob');
    it('warns at start', (t) => t.skip(message));
    return;
  }
  const pg = pgResult.server;
  let dbUrl: string;
  const f = fixture(() => ({ db: dbUrl }));
  before(async () => {
    dbUrl = await pg.createDatabase();
    await f.start();
  });
  after(async () => {
    await f.close();
    await pg.dropDatabase(dbUrl);
  });

  it('warns at start that every instance must share the artifact storage, and starts', () => {
    const warned = f.logged.filter((l) => l.includes(SHARED_WARNING));
    assert.equal(warned.length, 1, f.logged.join('\n'));
    assert.match(warned[0]!, / WARN +the state store is a shared PostgreSQL database \(--db\) but artifact bytes are kept in this instance's own artifact directory /);
    assert.match(warned[0]!, /with a single instance, nothing is wrong/);
  });

  it('is warned of by updraft doctor', async () => {
    const findings = await diagnose({ server: f.ts.httpUrl, token: f.ts.token });
    const artifacts = findings.filter((x) => x.check === 'artifacts');
    assert.deepEqual(artifacts.map((x) => x.verdict), ['warn'], JSON.stringify(findings));
    assert.match(artifacts[0]!.text, /shares a PostgreSQL store but keeps artifact bytes in its own directory \(no --blob\)/);
  });
});
