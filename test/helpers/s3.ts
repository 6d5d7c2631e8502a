/**
 * In-process S3-compatible servers (s3rver) on a free port, each with a temp directory:
 * `startTestS3` for a bucket that stays up, `startRestartableS3` for one that goes down and
 * comes back under a running server (a storage outage).
 */
import type { Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import S3rver from 's3rver';

/** A running s3rver. s3rver does not verify signatures: signature refusals are tested on the local store. */
export interface TestS3 {
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** Stops it and deletes its objects, for good. */
  stop(): Promise<void>;
}

/** Starts one on a free port. */
export async function startTestS3(): Promise<TestS3> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-s3-'));
  const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: dir });
  const { port } = await server.run();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    async stop() {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A running s3rver that `down` stops and `up` starts again on the same port with the same
 * objects. Its own keys are put in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, where the
 * server's S3 client finds them, until `close`.
 */
export interface RestartableS3 {
  endpoint: string;
  /** A `--blob` URL for `bucket` on it (created by the server at start). */
  blobUrl(bucket: string): string;
  /** Stops answering: open connections are closed, the port refuses new ones. */
  down(): Promise<void>;
  /** Answers again, with what it held. */
  up(): Promise<void>;
  /** Stops it, deletes its objects and gives the AWS_* variables back. */
  close(): Promise<void>;
}

/** Starts one on a free port. */
export async function startRestartableS3(): Promise<RestartableS3> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-s3-outage-'));
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  // s3rver's own keys, whatever the machine has (real AWS keys would be refused by it)
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  const make = (port: number) => new S3rver({ address: '127.0.0.1', port, silent: true, directory: dir });
  let server: S3rver | undefined = make(0);
  const { port } = await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const down = async () => {
    if (!server) return;
    // keep-alive connections of the server's S3 client would otherwise hold close() open
    (server as unknown as { httpServer?: Server }).httpServer?.closeAllConnections();
    await server.close();
    server = undefined;
  };
  return {
    endpoint,
    blobUrl: (bucket) => `s3://${bucket}?endpoint=${encodeURIComponent(endpoint)}&pathStyle=true&create=true&region=us-east-1`,
    down,
    async up() {
      if (server) return;
      server = make(port);
      await server.run();
    },
    async close() {
      await down();
      await rm(dir, { recursive: true, force: true });
      for (const [name, value] of [['AWS_ACCESS_KEY_ID', saved.id], ['AWS_SECRET_ACCESS_KEY', saved.secret]] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    },
  };
}
