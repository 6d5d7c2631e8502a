/**
 * An upload cut by a crash of the server (kill -9) leaves no partial file in the data
 * directory: the local blob store writes an upload to `artifacts/tmp/` until its hash is
 * known, and empties that directory as the server starts (no upload is in progress then).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

describe('an upload cut by a server crash', () => {
  const stops: (() => Promise<unknown>)[] = [];
  after(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  const start = async (dataDir: string, httpPort: number): Promise<CliProcess> => {
    const server = startCli(['server', '--data-dir', dataDir, '--http-host', '127.0.0.1', '--http-port', String(httpPort), '--mqtt-host', '127.0.0.1', '--mqtt-port', String(await freePort()), '--mqtt-tls-port', '-1']);
    stops.push(() => server.kill('SIGKILL'));
    await server.waitFor(/HTTP API and downloads on/, 60_000);
    return server;
  };

  it('leaves no partial file once the server starts again', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cut-upload-'));
    stops.push(() => rm(dataDir, { recursive: true, force: true }));
    const httpPort = await freePort();
    const server = await start(dataDir, httpPort);
    const token = (await readFile(path.join(dataDir, 'operator-token'), 'utf8')).trim();
    const tmp = path.join(dataDir, 'artifacts', 'tmp');

    // 1 MiB of a 5 MiB build sent, the rest never comes: the server is killed mid-upload
    const req = http.request({ host: '127.0.0.1', port: httpPort, method: 'POST', path: '/api/v1/artifacts?name=cut&version=1.0.0', headers: { authorization: `Bearer ${token}`, 'content-length': 5 * 1024 * 1024 } });
    req.on('error', () => undefined); // the connection dies with the server
    req.write(Buffer.alloc(1024 * 1024, 7));
    const partial = await eventually(async () => {
      const files = await readdir(tmp);
      if (files.length !== 1) return undefined;
      return (await stat(path.join(tmp, files[0]!))).size === 1024 * 1024 ? files[0] : undefined;
    }, 30_000, 'the first MiB written to a temporary file');
    await server.kill('SIGKILL');
    assert.deepEqual(await readdir(tmp), [partial], 'the crash left the partial file');

    await start(dataDir, httpPort);
    assert.deepEqual(await readdir(tmp), [], 'removed as the server started again');
  });
});
