/**
 * `job create` with an Idempotency-Key whose job is still being created in pieces (the
 * server's 409 with Retry-After: another instance, or the command's own earlier try, holds the
 * key's creation marker): the CLI asks again for up to a minute, those answers not counted as
 * its 4 tries, and says what to do when the creation outlasts that. A creation of a million
 * devices takes 5-9 s; 4 tries covered about 4-5 s and ended 'whether it was created is not
 * known'. The real updraft command, a real server on a private PostgreSQL; the marker is the
 * row a creation in pieces writes (job_creations), as in test/http/idempotency-key.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { fingerprintOf } from '../../src/http/idempotency-key.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('job create while its Idempotency-Key job is still being created', () => {
  let postgres: TestPostgres | undefined;
  let skip: string | undefined;
  let ts: TestServer;
  let dbUrl: string;
  let client: pg.Client;

  before(async () => {
    const started = await startTestPostgres();
    if (!started.ok) {
      skip = unavailable(started, 'PostgreSQL job creation in progress test');
      return;
    }
    postgres = started.server;
    dbUrl = await postgres.createDatabase();
    ts = await startTestServer({ flags: { db: dbUrl } });
    const up = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('two')) });
    assert.equal(up.status, 201);
    await registerDevice(ts, 'd1');
    client = new pg.Client({ connectionString: dbUrl });
    await client.connect();
  });
  after(async () => {
    await client?.end();
    await ts?.close();
    await postgres?.stop();
  });

  const jobsWithKey = async (key: string) => (await client.query('SELECT job_id FROM jobs WHERE idempotency_key = $1', [key])).rows.length;

  it('waits past its 4 tries for a creation that ends, and says what to do for one that outlasts a minute', async (t) => {
    if (skip) return t.skip(skip);
    // the job as --file gives it: the body the CLI sends, whose fingerprint the marker holds
    const spec = { artifact: 'fw@2.0.0', targets: { devices: ['d1'] }, plan: { startAt: '2999-01-01T00:00:00Z' } };
    const file = path.join(ts.dataDir, 'job.json');
    await writeFile(file, JSON.stringify(spec));
    const hold = async (key: string, jobId: string) =>
      client.query('INSERT INTO job_creations (job_id, touched_at, idempotency_key, request_fingerprint) VALUES ($1, $2, $3, $4)', [jobId, Date.now(), key, fingerprintOf('/api/v1/jobs', spec)]);
    const create = (key: string) => runCli(['job', 'create', '--file', file, '--idempotency-key', key, '--json', '--server', ts.httpUrl, '--token', ts.token]);

    const ends = randomUUID();
    const outlasts = randomUUID();
    await hold(ends, 'being-made-1');
    await hold(outlasts, 'being-made-2');
    const ending = create(ends);
    const outlasting = create(outlasts);
    // the creation holds its key 10 s (twice what 4 tries cover), then its marker goes (as a failed creation's abandon removes it)
    const exited = await Promise.race([ending.then(() => true), sleep(10_000).then(() => false)]);
    await client.query('DELETE FROM job_creations WHERE idempotency_key = $1', [ends]);
    const r = await ending;
    assert.equal(exited, false, `the command ended while the job was being created: ${r.stderr}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`the job of Idempotency-Key ${ends} is being created .*asking for it again for up to 60 s`));
    assert.equal(JSON.parse(r.stdout).job.jobId !== undefined, true);
    assert.equal(await jobsWithKey(ends), 1, 'one job holds the key');

    const o = await outlasting;
    assert.equal(o.code, 1, o.stderr);
    assert.match(o.stderr, new RegExp(`the job of Idempotency-Key ${outlasts} is still being created \\(the server said so for \\d+ s\\): run the same command again with --idempotency-key ${outlasts} to get its answer`));
    assert.doesNotMatch(o.stderr, /whether it was created is not known/);
    assert.equal(await jobsWithKey(outlasts), 0);
  });
});
