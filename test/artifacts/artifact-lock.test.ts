/**
 * Two instances sharing one PostgreSQL database (two stores, two artifact services, one blob
 * directory, as two instances share a database and a bucket): a build is never deleted on one
 * while a job for it is being created on the other, nor a job created for it on one while it
 * is being deleted on the other. Real PostgreSQL (a private server), real disk.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { ArtifactService } from '../../src/artifacts/artifact-service.ts';
import type { BlobStore } from '../../src/artifacts/blob-store.ts';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { UpdraftError } from '../../src/errors.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'artifact lock tests');
  it('artifact locks between instances', (t) => t.skip(message));
} else {
  const server = started.server;
  describe('artifact locks between instances', () => {
    let dir: string;
    let blobs: LocalBlobStore;
    const stores: PostgresStore[] = [];
    /** Deletions of bytes on instance B wait here while the test holds them. */
    let holdDeletes: Promise<void> | undefined;
    let deleting: (() => void) | undefined;
    let a: ArtifactService;
    let b: ArtifactService;
    let storeA: PostgresStore;
    let url: string;
    /** What instance A logged, one JSON line each. */
    const logA: string[] = [];

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-artifact-lock-'));
      blobs = new LocalBlobStore({ dir: path.join(dir, 'blobs') });
      await blobs.start();
      url = await server.createDatabase();
      for (let i = 0; i < 2; i++) {
        const s = new PostgresStore({ url, ...(i === 0 ? { logger: createLogger({ level: 'warn', format: 'json', write: (line) => logA.push(line) }) } : {}) });
        await s.start();
        stores.push(s);
      }
      storeA = stores[0]!;
      const gated: BlobStore = {
        start: () => blobs.start(),
        stop: () => blobs.stop(),
        stat: (sha) => blobs.stat(sha),
        read: (sha, range) => blobs.read(sha, range),
        write: (source, max) => blobs.write(source, max),
        delete: async (sha) => {
          deleting?.();
          await holdDeletes;
          return blobs.delete(sha);
        },
      };
      a = new ArtifactService({ store: stores[0]!, blobs, maxArtifactBytes: 1 << 20 });
      b = new ArtifactService({ store: stores[1]!, blobs: gated, maxArtifactBytes: 1 << 20 });
    });
    after(async () => {
      for (const s of stores) await s.stop();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    });

    const add = (version: string) => a.add('fw', version, Readable.from([Buffer.from(`build ${version}`)]));
    const isConflict = (re: RegExp) => (err: unknown) => err instanceof UpdraftError && err.code === 'CONFLICT' && re.test(err.message);

    it('refuses a deletion on one instance while a job for the build is being created on the other, then names the job', async () => {
      await add('1.0.0');
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let inside!: () => void;
      const entered = new Promise<void>((r) => (inside = r));
      const creating = a.whileCreatingJob('fw', '1.0.0', async (record) => {
        inside();
        await gate; // a large job is written for seconds, its row last
        await storeA.createJob({ jobId: 'job-1', artifactName: record.name, artifactVersion: record.version, status: 'IN_PROGRESS', createdAt: Date.now() }, [{ jobId: 'job-1', deviceId: 'dev-1', status: 'QUEUED', details: {}, queuedAt: Date.now(), updatedAt: Date.now(), version: 1 }]);
        return 'created';
      });
      await entered;
      await assert.rejects(b.delete('fw', '1.0.0'), isConflict(/a job for artifact fw@1\.0\.0 is being created right now on another instance/));
      // a second creation, on the other instance, goes on beside the first
      assert.equal(await b.whileCreatingJob('fw', '1.0.0', async (record) => record.version), '1.0.0');
      release();
      assert.equal(await creating, 'created');
      // the creation is over: the store's own check names the job it left
      await assert.rejects(b.delete('fw', '1.0.0'), isConflict(/installed by jobs that are not finished \(job-1\)/));
      assert.ok(await storeA.getArtifact('fw', '1.0.0'), 'the build is still there');
    });

    it('refuses a job creation on one instance while the build is being deleted on the other; after it, the build is gone', async () => {
      await add('2.0.0');
      let release!: () => void;
      holdDeletes = new Promise<void>((r) => (release = r));
      const reached = new Promise<void>((r) => (deleting = r));
      const deletion = b.delete('fw', '2.0.0');
      await reached; // its record is deleted, its bytes not yet: the lock is held
      let created = false;
      await assert.rejects(
        a.whileCreatingJob('fw', '2.0.0', async () => {
          created = true;
        }),
        isConflict(/artifact fw@2\.0\.0 is being deleted right now on another instance/),
      );
      assert.equal(created, false, 'nothing of the job was written');
      release();
      holdDeletes = undefined;
      deleting = undefined;
      assert.equal((await deletion).artifact.version, '2.0.0');
      await assert.rejects(a.whileCreatingJob('fw', '2.0.0', async () => undefined), (err: unknown) => err instanceof UpdraftError && err.code === 'NOT_FOUND');
    });

    it('lets the lock go when the creation fails', async () => {
      await add('3.0.0');
      await assert.rejects(
        a.whileCreatingJob('fw', '3.0.0', async () => {
          throw new UpdraftError('BAD_REQUEST', 'the target set is empty');
        }),
        /the target set is empty/,
      );
      assert.equal((await b.delete('fw', '3.0.0')).artifact.version, '3.0.0');
    });

    it('takes its locks again on a new connection after losing the one that held them', async () => {
      await add('4.0.0');
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let inside!: () => void;
      const entered = new Promise<void>((r) => (inside = r));
      const creating = a.whileCreatingJob('fw', '4.0.0', async () => {
        inside();
        await gate;
        return 'created';
      });
      await entered;
      // the database ends the session that holds instance A's locks (a restart, a failover, an idle timeout)
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const holders = await client.query<{ pid: number }>("SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock'");
        assert.equal(holders.rows.length, 1, 'one session holds the shared lock of the creation');
        await client.query('SELECT pg_terminate_backend($1)', [holders.rows[0]!.pid]);
        // with its session, the lock is gone: a deletion on B is no longer refused
        await eventually(async () => (await client.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).rows[0]!.n === 0 || undefined, 10_000, 'the lock released');
      } finally {
        await client.end();
      }
      await eventually(async () => logA.some((l) => l.includes('connection of the artifact locks lost')) || undefined, 10_000, 'the warning');
      release();
      assert.equal(await creating, 'created', 'the creation in progress ends as it would have');
      // the next creation on A opens a new connection, and its lock guards the build again
      let again!: () => void;
      const held = new Promise<void>((r) => (again = r));
      let letGo!: () => void;
      const hold = new Promise<void>((r) => (letGo = r));
      const second = a.whileCreatingJob('fw', '4.0.0', async () => {
        again();
        await hold;
      });
      await held;
      await assert.rejects(b.delete('fw', '4.0.0'), isConflict(/being created right now on another instance/));
      letGo();
      await second;
      assert.equal((await b.delete('fw', '4.0.0')).artifact.version, '4.0.0');
    });
  });
}
