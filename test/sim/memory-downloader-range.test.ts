/**
 * The simulator's in-memory downloader reads a 206 and a 416 as the agent's downloader does
 * (docs/agent.md, "Outages"): a 206 from byte 0 is the whole file, a 206 from another byte or
 * without a readable Content-Range is a failed attempt without progress (retried), a 416 fails
 * at once with its status. It failed at once on any 206 (its reason the artifact's first bytes,
 * as text), where an agent downloads. Both downloaders against the same real HTTP server,
 * answering in turn as each case says; the pauses on a fake clock.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { downloadArtifact, type DownloadOptions, type Downloader } from '../../src/agent/downloader.ts';
import { UpdraftError } from '../../src/errors.ts';
import { memoryDownloader } from '../../src/sim/memory-downloader.ts';
import { sha256, testContent } from '../agent/support/artifact-server.ts';

const SIZE = 64 * 1024 + 17;
const content = testContent(SIZE, 5);
/** Past this many requests of one download the server answers 404: the guard of a download retried without end. */
const GUARD = 50;

type Answer = (res: http.ServerResponse) => void;
const whole206: Answer = (res) => res.writeHead(206, { 'content-range': `bytes 0-${SIZE - 1}/${SIZE}`, 'content-length': SIZE }).end(content);
const from10: Answer = (res) => res.writeHead(206, { 'content-range': `bytes 10-${SIZE - 1}/${SIZE}`, 'content-length': SIZE - 10 }).end(content.subarray(10));
const noContentRange: Answer = (res) => res.writeHead(206, { 'content-length': SIZE }).end(content);
const whole200: Answer = (res) => res.writeHead(200, { 'content-length': SIZE }).end(content);
const rangeNotSatisfiable: Answer = (res) => res.writeHead(416, { 'content-range': `bytes */${SIZE}` }).end();

/** What a download came to: the requests it made, and its error's code, status and message (none: downloaded). */
interface Result {
  requests: number;
  error?: { code: string; status: number | undefined; message: string };
}

describe("the simulator's memoryDownloader reads a 206 and a 416 as the agent does", () => {
  let server: http.Server;
  let answers: Answer[] = [];
  let requests = 0;
  let dir: string;

  before(async () => {
    server = http.createServer((_req, res) => {
      requests++;
      if (requests > GUARD) return void res.writeHead(404).end('guard: too many requests');
      (answers.length > 1 ? answers.shift()! : answers[0]!)(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-mem-range-'));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  /** Runs `download` against the server answering `script` in turn (the last one for ever). */
  async function run(download: Downloader, name: string, script: Answer[]): Promise<Result> {
    answers = [...script];
    requests = 0;
    let t = 0;
    const clock: DownloadOptions['clock'] = { now: () => t, sleep: async (ms) => void (t += ms) };
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/fw?sig=s`;
    try {
      await download({ url, file: path.join(dir, `${name}.part`), size: SIZE, sha256: sha256(content), clock, retryForMs: 5_000, retryDelayMs: 100, maxRetryDelayMs: 1_000 });
      return { requests };
    } catch (err) {
      assert.ok(err instanceof UpdraftError, String(err));
      return { requests, error: { code: err.code, status: (err as { status?: number }).status, message: err.message } };
    }
  }

  /** `jittered`: the count of requests depends on the backoff's jitter (compared within bounds only). */
  const cases: { what: string; script: Answer[]; expect: (r: Result) => void; jittered?: boolean }[] = [
    { what: 'a 206 from byte 0 is the whole file', script: [whole206], expect: (r) => assert.deepEqual(r, { requests: 1 }) },
    { what: 'a 206 from another byte is refused, then a 200 downloads', script: [from10, whole200], expect: (r) => assert.deepEqual(r, { requests: 2 }) },
    { what: 'a 206 without Content-Range starts over, then a 200 downloads', script: [noContentRange, whole200], expect: (r) => assert.deepEqual(r, { requests: 2 }) },
    {
      what: 'a 206 from another byte every time runs the budget out',
      script: [from10],
      expect: (r) => {
        assert.equal(r.error?.code, 'DOWNLOAD');
        assert.match(r.error!.message, /^download failed: no progress in 5 s of retrying \(\d+ attempts\): server answered the range from byte 0 with bytes from 10 \(Content-Range: bytes 10-65552\/65553\); refused$/);
        assert.ok(r.requests > 2 && r.requests < GUARD, `${r.requests} requests`);
      },
      jittered: true,
    },
    {
      what: 'a 416 fails at once with its status',
      script: [rangeNotSatisfiable],
      expect: (r) => {
        assert.equal(r.requests, 1);
        assert.equal(r.error?.code, 'DOWNLOAD');
        assert.equal(r.error?.status, 416);
        assert.match(r.error!.message, /^HTTP 416: the server has no bytes from 0 on \(its file has 65553 bytes\), but the artifact has 65553/);
      },
    },
  ];

  cases.forEach(({ what, script, expect, jittered }, i) => {
    it(what, async () => {
      const agent = await run(downloadArtifact, `agent-${i}`, script);
      const memory = await run(memoryDownloader, `memory-${i}`, script);
      expect(agent);
      expect(memory);
      if (!jittered) assert.equal(memory.requests, agent.requests);
    });
  });
});
