/**
 * `GET /api/v1/artifacts` answers a page, newest first, as every other list (`limit`, `after`,
 * `next`) when asked with limit or after, every artifact when asked with neither (as before
 * paging, for older clients), optionally one name's versions (`?name=`), with `maxArtifactBytes` in every page;
 * `updraft artifact list` follows `next` and prints them all. It answered every artifact at
 * once, a signature check each, on every dashboard visit, `artifact list` and `artifact add`:
 * thousands with a fleet's nightly builds. Real server, real HTTP and CLI, on SQLite and on a
 * private PostgreSQL (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ArtifactRecord } from '../../src/store/state-store.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** Builds recorded straight into the server's store: more than the CLI's page of 1000. */
const RECORDED = 1_050;

type Listed = ArtifactRecord & { signatureStatus?: string };
type ListPage = { items: Listed[]; next?: string; maxArtifactBytes: number };

for (const db of ['SQLite', 'PostgreSQL'] as const) {
  describe(`the artifact list, on ${db}`, () => {
    let pg: TestPostgres | undefined;
    let skip: string | undefined;
    let ts: TestServer;
    /** Every artifact, newest first: the two uploads, then the recorded ones, the latest first. */
    let expected: string[];

    const get = async (query: string): Promise<{ status: number; body: ListPage & { error?: { code: string; message: string } } }> => {
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts${query}`, { headers: { authorization: `Bearer ${ts.token}` } });
      return { status: res.status, body: (await res.json()) as ListPage & { error?: { code: string; message: string } } };
    };
    const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
    const ref = (a: ArtifactRecord) => `${a.name}@${a.version}`;

    before(async () => {
      let url: string | undefined;
      if (db === 'PostgreSQL') {
        const started = await startTestPostgres();
        if (!started.ok) {
          skip = unavailable(started, 'PostgreSQL artifact list test');
          return;
        }
        pg = started.server;
        url = await pg.createDatabase();
      }
      ts = await startTestServer({ flags: { 'max-artifact-bytes': 500_000, ...(url ? { db: url } : {}) } });
      // records only (the list reads no bytes), each its own millisecond, long before the uploads
      const recorded = Array.from({ length: RECORDED }, (_, i): ArtifactRecord => ({ name: 'fw', version: `1.0.${i}`, sha256: i.toString(16).padStart(64, '0'), size: 1_000 + i, createdAt: 1_000_000 + i }));
      for (let i = 0; i < recorded.length; i += 100) await Promise.all(recorded.slice(i, i + 100).map((a) => ts.server.store.putArtifact(a)));
      // two real uploads, signed by the server, in this order: cam@2.0.0 is the newest
      for (const version of ['1.0.0', '2.0.0']) {
        const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=cam&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(1000)) });
        assert.equal(res.status, 201);
      }
      expected = ['cam@2.0.0', 'cam@1.0.0', ...recorded.map(ref).reverse()];
    });
    after(async () => {
      await ts?.close();
      await pg?.stop();
    });

    it('answers every artifact when asked without limit or after, and pages of 100 by default with one, newest first, maxArtifactBytes and next in each; following next gives every artifact once', async (t) => {
      if (skip) return t.skip(skip);
      // asked without limit or after, as a client from before paging asks (an older updraft
      // CLI knows no next): every artifact, with no next, never the newest 100 alone
      const whole = await get('');
      assert.equal(whole.status, 200);
      assert.equal(whole.body.next, undefined);
      assert.equal(whole.body.maxArtifactBytes, 500_000);
      assert.deepEqual(whole.body.items.map(ref), expected);
      assert.deepEqual((await get('?name=cam')).body.items.map(ref), ['cam@2.0.0', 'cam@1.0.0']);

      const first = await get('?limit=100');
      assert.equal(first.status, 200);
      assert.equal(first.body.items.length, 100, 'the default page, as the other lists');
      assert.equal(first.body.maxArtifactBytes, 500_000);
      assert.deepEqual(first.body.items.slice(0, 3).map((a) => [ref(a), a.signatureStatus]), [['cam@2.0.0', 'valid'], ['cam@1.0.0', 'valid'], ['fw@1.0.1049', 'unsigned']]);
      assert.equal(typeof first.body.next, 'string');

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await get(`?limit=400${cursor !== undefined ? `&after=${encodeURIComponent(cursor)}` : ''}`);
        assert.equal(page.status, 200);
        assert.equal(page.body.maxArtifactBytes, 500_000, 'in every page');
        seen.push(...page.body.items.map(ref));
        cursor = page.body.next;
        pages++;
      } while (cursor !== undefined && pages < 10);
      assert.equal(pages, 3);
      assert.deepEqual(seen, expected);

      // the limit only learns the size limit: one artifact
      const one = await get('?limit=1');
      assert.deepEqual([one.body.items.map(ref), one.body.maxArtifactBytes], [['cam@2.0.0'], 500_000]);
    });

    it("pages one name's versions with ?name= (exact), and refuses a limit over 1000, a cursor no page gave and an empty name", async (t) => {
      if (skip) return t.skip(skip);
      const cam = await get('?name=cam&limit=1');
      assert.deepEqual(cam.body.items.map(ref), ['cam@2.0.0']);
      const rest = await get(`?name=cam&limit=1&after=${encodeURIComponent(cam.body.next!)}`);
      assert.deepEqual([rest.body.items.map(ref), rest.body.next], [['cam@1.0.0'], undefined]);
      assert.deepEqual((await get('?name=ca')).body.items, []);

      for (const [query, message] of [
        ['?limit=1001', 'limit must be an integer from 1 to 1000, got 1001'],
        ['?after=fw@1.0.0', 'after must be a cursor returned as next, got fw@1.0.0'],
        ['?name=', 'name is empty: give an artifact name, or leave name out to list every artifact'],
      ] as const) {
        const r = await get(query);
        assert.deepEqual([r.status, r.body.error], [400, { code: 'BAD_REQUEST', message }], query);
      }
    });

    it('updraft artifact list prints every artifact, following next; --name one name only', async (t) => {
      if (skip) return t.skip(skip);
      const all = await cli('artifact', 'list', '--json');
      assert.equal(all.code, 0, all.stderr);
      assert.deepEqual((JSON.parse(all.stdout) as ArtifactRecord[]).map(ref), expected);
      const text = await cli('artifact', 'list', '--name', 'cam');
      assert.equal(text.code, 0, text.stderr);
      assert.deepEqual(text.stdout.split('\n').map((l) => l.split('  ')[0]), ['cam@2.0.0', 'cam@1.0.0', '']);
      const none = await cli('artifact', 'list', '--name', 'nope');
      assert.deepEqual([none.code, none.stdout], [0, 'no artifact is named nope\n']);
    });
  });
}
