/**
 * `GET /readyz`: ready while the store answers, the bus is connected and the instance is not
 * stopping; 503 naming the failing check otherwise; no token needed, no detail given.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ReadinessProbe } from '../../src/server/readiness.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startCli } from '../helpers/cli.ts';
import { startTestServer } from '../helpers/server.ts';

describe('readiness', () => {
  it('a running server is ready; with its store closed it is not, and says only which check fails', async () => {
    const ts = await startTestServer();
    try {
      const ready = await fetch(`${ts.httpUrl}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready', checks: { store: 'ok', artifacts: 'ok', broker: 'ok', instance: 'ok' } });
      assert.equal((await fetch(`${ts.httpUrl}/healthz`)).status, 200);

      await ts.server.store.stop(); // the database goes away under the running server
      const down = await fetch(`${ts.httpUrl}/readyz`);
      assert.equal(down.status, 503);
      assert.deepEqual(await down.json(), { status: 'not ready', checks: { store: 'unreachable', artifacts: 'ok', broker: 'ok', instance: 'ok' } });
      assert.equal((await fetch(`${ts.httpUrl}/healthz`)).status, 200, 'still alive: liveness is another question');
    } finally {
      await ts.close();
    }
  });

  it('is not ready while the bus is disconnected, the store does not answer in time, or the instance stops; logs each change once', async () => {
    const lines: string[] = [];
    const state = { connected: true, stopping: false, hang: false, blobsDown: false };
    const probe = new ReadinessProbe({
      store: { getDevice: () => (state.hang ? new Promise(() => {}) : Promise.resolve(undefined)) },
      blobs: { stat: () => (state.blobsDown ? Promise.reject(new Error('connect ECONNREFUSED')) : Promise.resolve(undefined)) },
      busConnected: () => state.connected,
      stopping: () => state.stopping,
      logger: createLogger({ write: (l) => lines.push(l) }),
      timeoutMs: 20,
    });
    assert.equal((await probe.check()).ready, true);
    state.connected = false;
    assert.deepEqual(await probe.check(), { ready: false, checks: { store: 'ok', artifacts: 'ok', broker: 'disconnected', instance: 'ok' } });
    await probe.check();
    state.connected = true;
    state.hang = true;
    assert.deepEqual((await probe.check()).checks, { store: 'timeout', artifacts: 'ok', broker: 'ok', instance: 'ok' });
    state.hang = false;
    state.blobsDown = true;
    assert.deepEqual((await probe.check()).checks, { store: 'ok', artifacts: 'unreachable', broker: 'ok', instance: 'ok' });
    state.blobsDown = false;
    state.stopping = true;
    assert.deepEqual((await probe.check()).checks, { store: 'ok', artifacts: 'ok', broker: 'ok', instance: 'stopping' });
    assert.equal(lines.length, 5, `one line per change: ${lines.join('\n')}`);
    assert.match(lines[2]!, /WARN .*not ready store=timeout artifacts=ok broker=ok instance=ok storeError="no answer within 20 ms"$/);
    assert.match(lines[3]!, /artifacts=unreachable .*artifactsError="connect ECONNREFUSED"$/);
  });

  it('drains on SIGTERM with --drain-seconds: not ready, still serving; a second signal stops it at once', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-drain-'));
    const server = startCli(['server', '--data-dir', dataDir, '--drain-seconds', '600', '--mqtt-port', '0', '--mqtt-tls-port', '-1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1']);
    try {
      const url = (await server.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
      assert.equal((await fetch(`${url}/readyz`)).status, 200);
      server.child.kill('SIGTERM');
      await server.waitFor(/SIGTERM: draining for 600 s before stopping/);
      const draining = await fetch(`${url}/readyz`);
      assert.equal(draining.status, 503);
      assert.deepEqual(((await draining.json()) as { checks: unknown }).checks, { store: 'ok', artifacts: 'ok', broker: 'ok', instance: 'stopping' });
      assert.equal((await fetch(`${url}/healthz`)).status, 200, 'still serving while it drains');
      assert.equal(await server.kill('SIGTERM'), 0, 'the second signal stops it, cleanly');
      // the stop's end is said, as its start was (only the exit code told it before)
      assert.match(server.output().trimEnd().split('\n').at(-1)!, /INFO +stopped$/, `the last line says the stop ended:\n${server.output()}`);
    } finally {
      await server.kill('SIGKILL');
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
