/**
 * A proxy in front of a test server for `mosquitto-config --watch`'s tests, acting on the
 * requests whose path starts with `holdPrefix` as the test's switches say (its `state`), so
 * that nothing depends on how fast the machine is:
 * - `holding`: the answer stops after its head and a few bytes of its body until `release()`
 *   (a CRL still downloading); never released, it is an answer that stops in the middle;
 * - `hanging`: the request is taken and never answered (nor sent on to the server);
 * - `trickling`: the whole answer comes in four pieces `gapMs` apart, padded with JSON's blanks
 *   to 64 KiB a piece at least (a large answer that keeps coming, slowly);
 * - `refusing`: a request under `refusePrefix` is answered 401 (a token refused).
 * `streamClosed` says when the event stream's request closed (the watch took a stop in).
 * Everything else passes through.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { apiJson, registerDevice, type TestServer } from './server.ts';

/** The switches a test sets on a holding proxy (read at each request), and what it counted. */
export interface HoldingProxyState {
  /** Answers under the prefix stop after their head and at most 10 bytes (never the whole body) until `release()`. */
  holding: boolean;
  /** Answers held so far (by `holding`). */
  held: number;
  /** Requests under the prefix get no answer at all (checked before `holding`). */
  hanging: boolean;
  /** Requests hung so far (by `hanging`). */
  hung: number;
  /** Answers under the prefix come in four pieces `gapMs` apart, at least 64 KiB each (when neither of the above). */
  trickling: boolean;
  /** The gap between two pieces of a trickled answer, in ms. */
  gapMs: number;
  /** Answers trickled to their end so far. */
  trickled: number;
  /** Requests under `refusePrefix` are answered 401 (checked first). */
  refusing: boolean;
  /** Requests refused so far. */
  refused: number;
  /** Whether the event stream's request (`/api/v1/events`) has closed. */
  streamClosed: boolean;
}

/** A running holding proxy. */
export interface HoldingProxy {
  /** The proxy's base URL (http://127.0.0.1:port). */
  readonly url: string;
  /** Its switches and counts. */
  readonly state: HoldingProxyState;
  /** Sends the rest of every answer held so far. */
  release(): void;
  /** Closes the proxy and every connection to it. */
  close(): Promise<void>;
}

/** Starts a holding proxy in front of `target` (a base URL), acting on paths under `holdPrefix` (and `refusePrefix`), every switch off. */
export async function startHoldingProxy(target: string, holdPrefix: string, refusePrefix?: string): Promise<HoldingProxy> {
  const to = new URL(target);
  const waiting: (() => void)[] = [];
  const state: HoldingProxyState = { holding: false, held: 0, hanging: false, hung: 0, trickling: false, gapMs: 0, trickled: 0, refusing: false, refused: 0, streamClosed: false };
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
    const mode = !url.startsWith(holdPrefix) ? 'pass' : state.hanging ? 'hang' : state.holding ? 'hold' : state.trickling ? 'trickle' : 'pass';
    if (mode === 'hang') {
      state.hung++;
      return; // the connection stays open, and no answer comes
    }
    const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      if (mode === 'pass') {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      answer.on('data', (c: Buffer) => chunks.push(c));
      answer.on('end', () => {
        let body = Buffer.concat(chunks);
        if (mode === 'hold') {
          const cut = Math.max(0, Math.min(10, body.length - 1)); // never the whole body before release()
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.write(body.subarray(0, cut));
          state.held++;
          waiting.push(() => res.end(body.subarray(cut)));
          return;
        }
        body = Buffer.concat([body, Buffer.alloc(Math.max(0, 4 * 64 * 1024 - body.length), ' ')]);
        answer.headers['content-length'] = String(body.length);
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        const step = Math.ceil(body.length / 4);
        const send = (at: number) => {
          if (res.destroyed) return;
          if (at + step >= body.length) {
            state.trickled++;
            res.end(body.subarray(at));
            return;
          }
          res.write(body.subarray(at, at + step));
          setTimeout(() => send(at + step), state.gapMs);
        };
        send(0);
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
