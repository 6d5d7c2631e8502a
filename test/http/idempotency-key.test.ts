/**
 * The `Idempotency-Key` header of the routes that create a rollout (`POST /api/v1/jobs`,
 * `POST /api/v1/deployments`; http/idempotency-key.ts): a retry with the key answers the job
 * its first request created (200, `Idempotent-Replayed: true`) and creates none; the key with
 * another body is 422; a bad key is 400; requests racing with one key make one job, also
 * split between two instances on one PostgreSQL; a key whose job is still being created (a
 * creation in pieces on another instance) is 409 with Retry-After; a deleted job frees its
 * key; without the header nothing changed. Real servers over HTTP, on SQLite and on a
 * private PostgreSQL (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { cp, mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

type Answer = { status: number; body: any; replayed: string | null; retryAfter: string | null };

/** Jobs that start in a far future: nothing is sent, a cancel ends every execution at once. */
const later = { startAt: '2999-01-01T00:00:00Z' };

async function post(ts: TestServer, route: string, body: unknown, key?: string, rawKey?: string): Promise<Answer> {
  const res = await fetch(ts.httpUrl + route, {
    method: 'POST',
    headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json', ...(key !== undefined ? { 'idempotency-key': key } : {}) },
    body: rawKey ?? JSON.stringify(body),
  });
  return { status: res.status, body: await res.json(), replayed: res.headers.get('idempotent-replayed'), retryAfter: res.headers.get('retry-after') };
}

async function jobCount(ts: TestServer): Promise<number> {
  const res = await fetch(`${ts.httpUrl}/api/v1/jobs?limit=500`, { headers: { authorization: `Bearer ${ts.token}` } });
  return ((await res.json()) as { items: unknown[] }).items.length;
}

async function prepare(ts: TestServer): Promise<void> {
  const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('two')) });
  assert.equal(up.status, 201);
  for (const id of ['d1', 'd2', 'd3']) await registerDevice(ts, id);
}

for (const db of ['SQLite', 'PostgreSQL'] as const) {
  describe(`Idempotency-Key on job creation, on ${db}`, () => {
    let postgres: TestPostgres | undefined;
    let skip: string | undefined;
    let ts: TestServer;
    let dbUrl: string | undefined;

    before(async () => {
      if (db === 'PostgreSQL') {
        const started = await startTestPostgres();
        if (!started.ok) {
          skip = unavailable(started, 'PostgreSQL Idempotency-Key test');
          return;
        }
        postgres = started.server;
        dbUrl = await postgres.createDatabase();
      }
      ts = await startTestServer({ flags: dbUrl ? { db: dbUrl } : {} });
      await prepare(ts);
    });
    after(async () => {
      await ts?.close();
      await postgres?.stop();
    });

    it('answers a retry with the job its first request created, creating none; the same key with another body is 422', async (t) => {
      if (skip) return t.skip(skip);
      const before = await jobCount(ts);
      const key = randomUUID();
      const first = await post(ts, '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2'] }, plan: later, description: 'once' }, key);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      assert.equal(first.replayed, null);
      // the same request, its fields in another order: the same fingerprint
      const again = await post(ts, '/api/v1/jobs', { description: 'once', plan: later, targets: { devices: ['d1', 'd2'] }, artifact: 'fw@2.0.0' }, key);
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.replayed, 'true');
      assert.equal(again.body.job.jobId, first.body.job.jobId);
      assert.equal(again.body.total, 2);
      // quoted as the draft's structured-field string: the same key
      const quoted = await post(ts, '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2'] }, plan: later, description: 'once' }, `"${key}"`);
      assert.equal(quoted.status, 200);
      assert.equal(quoted.body.job.jobId, first.body.job.jobId);
      assert.equal(await jobCount(ts), before + 1, 'one job for three requests');

      const other = await post(ts, '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2', 'd3'] }, plan: later, description: 'once' }, key);
      assert.equal(other.status, 422, JSON.stringify(other.body));
      assert.match(other.body.error.message, new RegExp(`Idempotency-Key ${key} was used for another request \\(job ${first.body.job.jobId}`));
      // another route is another request
      const deploy = await post(ts, '/api/v1/deployments', { devices: ['d1'], artifact: 'fw@2.0.0' }, key);
      assert.equal(deploy.status, 422, JSON.stringify(deploy.body));
      assert.equal(await jobCount(ts), before + 1, 'nothing created by the refused ones');
    });

    it('does the same for deployments', async (t) => {
      if (skip) return t.skip(skip);
      const before = await jobCount(ts);
      const key = randomUUID();
      const first = await post(ts, '/api/v1/deployments', { devices: ['d3'], artifact: 'fw@2.0.0' }, key);
      assert.equal(first.status, 201, JSON.stringify(first.body));
      const again = await post(ts, '/api/v1/deployments', { devices: ['d3'], artifact: 'fw@2.0.0' }, key);
      assert.equal(again.status, 200, JSON.stringify(again.body));
      assert.equal(again.replayed, 'true');
      assert.equal(again.body.job.jobId, first.body.job.jobId);
      assert.deepEqual(again.body.executions.map((e: { deviceId: string }) => e.deviceId), ['d3']);
      assert.equal(again.body.total, 1);
      assert.equal(await jobCount(ts), before + 1);
    });

    it('refuses a bad key with 400 saying what is wrong, creating nothing', async (t) => {
      if (skip) return t.skip(skip);
      const before = await jobCount(ts);
      const body = { artifact: 'fw@2.0.0', targets: { devices: ['d1'] }, plan: later };
      const cases: [string, RegExp][] = [
        ['', /Idempotency-Key is empty/],
        ['x'.repeat(256), /Idempotency-Key is 256 characters long: at most 255/],
        ['two words', /Idempotency-Key has a space at position 4/],
        ['"unclosed', /not a quoted string/],
      ];
      for (const [key, message] of cases) {
        const r = await post(ts, '/api/v1/jobs', body, key);
        assert.equal(r.status, 400, `${key}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.error.message, message);
      }
      // a character outside ASCII (fetch refuses to send one: by hand, as Latin-1)
      const raw = await rawPost(ts, '/api/v1/jobs', JSON.stringify(body), ['Idempotency-Key: key\u00e9']);
      assert.equal(raw.status, 400, raw.text);
      assert.match(raw.text, /character U\+00E9 at position 4/);
      const twice = await rawPost(ts, '/api/v1/jobs', JSON.stringify(body), ['Idempotency-Key: a', 'Idempotency-Key: b']);
      assert.equal(twice.status, 400, twice.text);
      assert.match(twice.text, /sent 2 times/);
      // 255 characters are taken
      assert.equal((await post(ts, '/api/v1/jobs', body, 'k'.repeat(255))).status, 201);
      assert.equal(await jobCount(ts), before + 1);
    });

    it('creates one job for requests racing with one key', async (t) => {
      if (skip) return t.skip(skip);
      const before = await jobCount(ts);
      const key = randomUUID();
      const answers = await Promise.all(Array.from({ length: 8 }, () => post(ts, '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2', 'd3'] }, plan: later }, key)));
      assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 200, 200, 200, 200, 201], JSON.stringify(answers.map((a) => a.body)));
      assert.equal(new Set(answers.map((a) => a.body.job.jobId)).size, 1);
      assert.equal(await jobCount(ts), before + 1);
    });

    it('frees the key of a deleted job; without a key every request creates', async (t) => {
      if (skip) return t.skip(skip);
      const key = randomUUID();
      const body = { artifact: 'fw@2.0.0', targets: { devices: ['d2'] }, plan: later };
      const first = await post(ts, '/api/v1/jobs', body, key);
      assert.equal(first.status, 201);
      const jobId: string = first.body.job.jobId;
      const cancel = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
      assert.equal(cancel.status, 200);
      const del = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}`, { method: 'DELETE', headers: { authorization: `Bearer ${ts.token}` } });
      assert.equal(del.status, 200, await del.text());
      const second = await post(ts, '/api/v1/jobs', body, key);
      assert.equal(second.status, 201, JSON.stringify(second.body));
      assert.notEqual(second.body.job.jobId, jobId);

      const before = await jobCount(ts);
      const plain = [await post(ts, '/api/v1/jobs', body), await post(ts, '/api/v1/jobs', body)];
      assert.deepEqual(plain.map((p) => [p.status, p.replayed]), [[201, null], [201, null]]);
      assert.equal(await jobCount(ts), before + 2);
    });

    if (db === 'PostgreSQL') {
      it('answers 409 with Retry-After while another instance is still creating the key\'s job in pieces', async (t) => {
        if (skip) return t.skip(skip);
        const body = { artifact: 'fw@2.0.0', targets: { devices: ['d1'] }, plan: later };
        const key = randomUUID();
        // what an instance creating a job of many devices holds from its first piece (job-creation.ts)
        const { fingerprintOf } = await import('../../src/http/idempotency-key.ts');
        const client = new pg.Client({ connectionString: dbUrl });
        await client.connect();
        try {
          await client.query('INSERT INTO job_creations (job_id, touched_at, idempotency_key, request_fingerprint) VALUES ($1, $2, $3, $4)', ['being-made', Date.now(), key, fingerprintOf('/api/v1/jobs', body)]);
          const before = await jobCount(ts);
          const r = await post(ts, '/api/v1/jobs', body, key);
          assert.equal(r.status, 409, JSON.stringify(r.body));
          assert.match(r.body.error.message, /a request with Idempotency-Key .* is in progress \(job being-made is being created\); retry/);
          assert.equal(r.retryAfter, '1');
          assert.equal(await jobCount(ts), before);
        } finally {
          await client.end();
        }
      });

      it('creates one job for requests with one key split between two instances', async (t) => {
        if (skip) return t.skip(skip);
        // every instance shares the identity material (docs/deployment.md): B gets A's keys and token
        const dirB = await mkdtemp(path.join(os.tmpdir(), 'updraft-idempotency-b-'));
        await cp(ts.dataDir, dirB, { recursive: true });
        const b = await startTestServer({ dataDir: dirB, flags: { db: dbUrl } });
        try {
          const before = await jobCount(ts);
          for (let round = 0; round < 3; round++) {
            const key = randomUUID();
            const body = { artifact: 'fw@2.0.0', targets: { devices: ['d1', 'd2', 'd3'] }, plan: later, description: `round ${round}` };
            const answers = await Promise.all(Array.from({ length: 6 }, (_, i) => post(i % 2 ? b : ts, '/api/v1/jobs', body, key)));
            assert.deepEqual(answers.map((a) => a.status).sort(), [200, 200, 200, 200, 200, 201], JSON.stringify(answers.map((a) => a.body)));
            assert.equal(new Set(answers.map((a) => a.body.job.jobId)).size, 1);
          }
          assert.equal(await jobCount(ts), before + 3);
          assert.equal(await jobCount(b), before + 3);
        } finally {
          await b.close();
        }
      });
    }
  });
}

/** A POST written by hand (headers fetch would refuse or merge). */
async function rawPost(ts: TestServer, route: string, body: string, headerLines: string[]): Promise<{ status: number; text: string }> {
  const net = await import('node:net');
  const url = new URL(ts.httpUrl);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(
        [`POST ${route} HTTP/1.1`, `Host: ${url.host}`, `Authorization: Bearer ${ts.token}`, 'Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`, 'Connection: close', ...headerLines, '', body].join('\r\n'),
        'latin1',
      );
    });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (d) => (text += d));
    socket.on('error', reject);
    socket.on('end', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), text }));
  });
}
