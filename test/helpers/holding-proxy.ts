/**
 * A proxy in front of a test server for `mosquitto-config --watch`'s tests: while `holding`,
 * an answer to a path under `holdPrefix` stops after its head and 10 bytes until `release()`
 * (a CRL still downloading, whatever the machine's speed); while `refusing`, a request under
 * `refusePrefix` is answered 401 (a token refused); `streamClosed` says when the event stream's
 * request closed (the watch took a stop in). Everything else passes through.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { apiJson, registerDevice, type TestServer } from './server.ts';

export async function startHoldingProxy(target: string, holdPrefix: string, refusePrefix?: string) {
  const to = new URL(target);
  const waiting: (() => void)[] = [];
  const state = { holding: false, held: 0, refusing: false, refused: 0, streamClosed: false };
  const server = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (refusePrefix !== undefined && state.refusing && url.startsWith(refusePrefix)) {
      state.refused++;
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'UNAUTHORIZED', message: 'token refused (test proxy)' } }));
      return;
    }
    if (url.startsWith('/api/v1/events')) res.once('close', () => (state.streamClosed = true));
    const hold = state.holding && url.startsWith(holdPrefix);
    const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (!hold) {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        const body = Buffer.concat(chunks);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        res.write(body.subarray(0, 10));
        state.held++;
        waiting.push(() => res.end(body.subarray(10)));
      });
    });
    up.on('error', () => res.destroy());
    res.once('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    release: () => waiting.splice(0).forEach((go) => go()),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Registers `deviceId` on `ts` and gives it a client certificate (deleting it then revokes that certificate). */
export async function enrolWithCertificate(ts: TestServer, deviceId: string): Promise<void> {
  await registerDevice(ts, deviceId);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${deviceId}/certificate`);
  assert.equal(r.status, 201, `certificate of ${deviceId}: ${JSON.stringify(r.body)}`);
}
