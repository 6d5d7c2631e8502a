/**
 * The CLI against a server one release older: GET /api/v1/artifacts before it was paged
 * (1cf1234) took no query parameter, refusing `limit` with 400 "unknown query parameter "limit"
 * (it takes none)", and answered its whole list with maxArtifactBytes. `updraft artifact add`
 * learns the size limit with `?limit=1` and `artifact list` pages with `?limit=1000`: both were
 * refused. A small node:http server stands in for that release (its answers as it gave them);
 * the real CLI process talks to it over HTTP.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';

/** The older server's artifact routes: the list without parameters, and uploads. */
function olderServer(maxArtifactBytes: number) {
  const items = [
    { name: 'cam', version: '1.0.0', sha256: 'a'.repeat(64), size: 3, createdAt: 1 },
    { name: 'fw', version: '1.0.0', sha256: 'b'.repeat(64), size: 4, createdAt: 2 },
  ];
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url!, 'http://x');
    asked.push(`${req.method} ${url.pathname}${url.search}`);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && url.pathname === '/api/v1/artifacts') {
      const unknown = [...url.searchParams.keys()];
      if (unknown.length > 0) {
        return send(400, { error: { code: 'BAD_REQUEST', message: `unknown query parameter${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} (it takes none)` } });
      }
      return send(200, { items, maxArtifactBytes });
    }
    if (req.method === 'POST' && url.pathname === '/api/v1/artifacts') {
      const hash = createHash('sha256');
      let size = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        size += c.length;
      });
      req.on('end', () => {
        const rec = { name: url.searchParams.get('name')!, version: url.searchParams.get('version')!, sha256: hash.digest('hex'), size, createdAt: 3 };
        items.push(rec);
        send(201, rec);
      });
      return;
    }
    send(404, { error: { code: 'NOT_FOUND', message: 'no such route' } });
  });
  return { server, asked };
}

describe('the CLI against a server from before the artifact list was paged', () => {
  const older = olderServer(1000);
  let url: string;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-older-server-'));
    await new Promise<void>((resolve) => older.server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(older.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((resolve) => older.server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const cli = (...args: string[]) => runCli([...args, '--server', url, '--token', 'tok'], { cwd: dir });

  it('artifact add learns the size limit from the whole list, and uploads', async () => {
    const bytes = randomBytes(600);
    await writeFile(path.join(dir, 'fits.bin'), bytes);
    const r = await cli('artifact', 'add', './fits.bin', '--name', 'fw', '--version', '2.0.0');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^added fw@2\\.0\\.0\\n  sha256 ${createHash('sha256').update(bytes).digest('hex')}\\n  size   600 bytes`));
    assert.deepEqual(older.asked.slice(-3), ['GET /api/v1/artifacts?limit=1', 'GET /api/v1/artifacts', 'POST /api/v1/artifacts?name=fw&version=2.0.0']);
  });

  it('artifact add refuses a build over that limit before sending it', async () => {
    await writeFile(path.join(dir, 'big.bin'), randomBytes(1001));
    const before = older.asked.length;
    const r = await cli('artifact', 'add', './big.bin', '--name', 'fw', '--version', '3.0.0');
    assert.deepEqual([r.code, r.stderr], [2, 'updraft: error: ./big.bin is 1001 bytes: the server takes builds of at most 1000 bytes (its --max-artifact-bytes); nothing was sent\n']);
    assert.deepEqual(older.asked.slice(before), ['GET /api/v1/artifacts?limit=1', 'GET /api/v1/artifacts']);
  });

  it('artifact list prints the whole list, and --name one name of it', async () => {
    const all = await cli('artifact', 'list');
    assert.equal(all.code, 0, all.stderr);
    assert.deepEqual(all.stdout.trim().split('\n').map((l) => l.split('  ')[0]), ['cam@1.0.0', 'fw@1.0.0', 'fw@2.0.0']);
    const fw = await cli('artifact', 'list', '--name', 'fw');
    assert.equal(fw.code, 0, fw.stderr);
    assert.deepEqual(fw.stdout.trim().split('\n').map((l) => l.split('  ')[0]), ['fw@1.0.0', 'fw@2.0.0']);
  });
});
