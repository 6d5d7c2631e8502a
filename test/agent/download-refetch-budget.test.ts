/**
 * The retry budget of a download counts only bytes beyond the most the file ever held, and the
 * fetch from the start after a resumed file fails verification is made once (docs/agent.md,
 * "Outages"; step 5): a server that makes the same bytes be lost and fetched again every
 * cycle (a 206 from the wrong byte, a resume that brings wrong bytes, a 200 cut at the same
 * place) ends the job within the budget instead of being asked again until the server's job
 * timeout. A real HTTP server; a clock that moves only when the downloader waits.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { downloadArtifact } from '../../src/agent/downloader.ts';
import { UpdraftError } from '../../src/errors.ts';
import { sha256, testContent } from './support/artifact-server.ts';

const content = testContent(200_000, 9);
const CUT = 80_000;
/** Past this many requests the server answers 404: the guard that ends a download retried without end. */
const GUARD = 300;

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

describe('downloadArtifact: the same bytes lost and fetched again do not renew the retry budget', () => {
  let server: http.Server;
  let handler: Handler;
  const requests: (string | undefined)[] = [];
  let dir: string;

  before(async () => {
    server = http.createServer((req, res) => {
      requests.push(req.headers.range);
      if (requests.length > GUARD) {
        res.writeHead(404).end('guard: too many requests');
        return;
      }
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dl-refetch-'));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(() => (requests.length = 0));

  /** The first request without Range gets the first CUT bytes and the connection cut; a Range request goes to `then`. */
  const cutThen =
    (then: Handler): Handler =>
    (req, res) => {
      if (!req.headers.range) {
        res.writeHead(200, { 'content-length': content.length });
        res.write(content.subarray(0, CUT), () => setTimeout(() => res.socket?.destroy(), 20));
        return;
      }
      then(req, res);
    };

  const download = async (name: string) => {
    let t = 0;
    const clock = { now: () => t, sleep: async (ms: number) => void (t += ms) };
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fw?sig=s3cr3t`;
    return downloadArtifact({ url, file: path.join(dir, `${name}.part`), size: content.length, sha256: sha256(content), clock, retryForMs: 1500, retryDelayMs: 100, maxRetryDelayMs: 400 }).then(
      () => assert.fail('downloaded'),
      (e: unknown) => e,
    );
  };

  it('a 206 that starts at the wrong byte is refused, the bytes on disk kept, no progress: the budget ends', async () => {
    handler = cutThen((_req, res) => {
      res.writeHead(206, { 'content-range': `bytes 10-${content.length - 1}/${content.length}` });
      res.end(content.subarray(10));
    });
    const err = await download('wrong-start');
    assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
    assert.match(err.message, /^download failed: no progress in 2 s of retrying \(\d+ attempts\): server answered the range from byte 80000 with bytes from 10 \(Content-Range: bytes 10-199999\/200000\); refused$/);
    assert.ok(requests.length < 30, `${requests.length} requests`);
    assert.equal(requests.filter((r) => r === undefined).length, 1, 'fetched from the start once');
    assert.ok(requests.slice(1).every((r) => r === `bytes=${CUT}-`), String(requests));
  });

  it('a resume that brings wrong bytes: one fetch from the start, then the mismatch ends the job', async () => {
    handler = cutThen((req, res) => {
      const from = Number(/bytes=(\d+)-/.exec(req.headers.range!)![1]);
      res.writeHead(206, { 'content-range': `bytes ${from}-${content.length - 1}/${content.length}` });
      res.end(Buffer.alloc(content.length - from, 3));
    });
    const err = await download('wrong-bytes');
    assert.ok(err instanceof UpdraftError && err.code === 'INTEGRITY', String(err));
    assert.match(err.message, /^sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64} \(after downloading it again from the start\)$/);
    assert.deepEqual(requests, [undefined, `bytes=${CUT}-`, undefined, `bytes=${CUT}-`]);
  });

  it('a server that ignores Range and cuts at the same byte every time: no byte beyond the first cut is progress', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': content.length });
      res.write(content.subarray(0, CUT), () => setTimeout(() => res.socket?.destroy(), 20));
    };
    const err = await download('same-cut');
    assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
    assert.match(err.message, /^download failed: no progress in 2 s of retrying \(\d+ attempts\): connection (interrupted|closed) after 80000 of 200000 bytes/);
    assert.ok(requests.length < 30, `${requests.length} requests`);
  });

  it('a 416 while the file is incomplete fails at once, naming the 416 and what the server says it has', async () => {
    handler = cutThen((_req, res) => {
      res.writeHead(416, { 'content-range': `bytes */${content.length}` });
      res.end();
    });
    const err = await download('416');
    assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD' && err.status === 416, String(err));
    assert.equal(err.message, 'HTTP 416: the server has no bytes from 80000 on (its file has 200000 bytes), but the artifact has 200000; the partial file was deleted');
    assert.deepEqual(requests, [undefined, `bytes=${CUT}-`]);
  });
  it('a whole file kept from before a restart, the fetch from the start made then: fails saying it downloaded nothing', async () => {
    // the job's one fetch from the start was made before the restart (fetchedFromStart, saved
    // with the job); the file on the device is whole but not the build (changed on the disk)
    handler = (_req, res) => void res.writeHead(200, { 'content-length': content.length }).end(content);
    const file = path.join(dir, 'kept.part');
    await writeFile(file, Buffer.alloc(content.length, 7));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fw?sig=s3cr3t`;
    const err = await downloadArtifact({ url, file, size: content.length, sha256: sha256(content), fetchedFromStart: true }).then(
      () => assert.fail('downloaded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UpdraftError && err.code === 'INTEGRITY', String(err));
    // it said "after downloading it again from the start": this run downloaded nothing
    assert.match(err.message, /^sha256 mismatch: expected [0-9a-f]{64}, got [0-9a-f]{64} \(the file kept on the device, not downloaded again: this job already made its one download from the start\)$/);
    assert.deepEqual(requests, []);
    await assert.rejects(stat(file), { code: 'ENOENT' }, 'the file deleted');
  });
});
