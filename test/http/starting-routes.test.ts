/**
 * While the server starts: it listens before its routes are all added (they need its port),
 * and a request no route matches yet is answered 503 with Retry-After, not 404. QA of
 * 2026-12-07 saw 0.4 s of 404s at each instance's start: the CRL watch read its 404 as a
 * server without the route ("upgrade it") and backed off 16 s, and a balancer's health check
 * saw 404 for /readyz. Once every route is added, an unknown path is a 404 again (the whole
 * server: test/http/refused-upload.test.ts's unknown route).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HttpServer, STARTING_RETRY_AFTER_SECONDS } from '../../src/http/http-server.ts';
import { sendJson } from '../../src/http/respond.ts';
import { Router } from '../../src/http/router.ts';
import { createLogger } from '../../src/util/logger.ts';

const TOKEN = 'op-token-for-the-starting-routes-test';

describe('routes still being added', () => {
  it('answers 503 with Retry-After until routesComplete(), then the route or 404', async () => {
    const router = new Router();
    const logged: string[] = [];
    const http = new HttpServer({ port: 0, host: '127.0.0.1', router, operatorToken: TOKEN, routesPending: true, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    await http.start();
    try {
      const base = `http://127.0.0.1:${http.port}`;
      const auth = { authorization: `Bearer ${TOKEN}` };
      const early = await fetch(`${base}/readyz`);
      assert.equal(early.status, 503, 'a route not added yet: 503, not 404');
      assert.equal(early.headers.get('retry-after'), String(STARTING_RETRY_AFTER_SECONDS), 'the client is told when to try again');
      assert.deepEqual(await early.json(), { error: { code: 'UNAVAILABLE', message: `the server is starting: try again in ${STARTING_RETRY_AFTER_SECONDS} s` } }, 'the body says why');
      const api = await fetch(`${base}/api/v1/broker/crl`, { headers: auth });
      assert.equal(api.status, 503, 'an API route not added yet: 503 (the watch retries it, where a 404 meant "no such route: upgrade")');
      const unauthenticated = await fetch(`${base}/api/v1/broker/crl`);
      assert.equal(unauthenticated.status, 401, 'the token is still checked first: no path under /api/ is told to a caller without one');
      const posted = await fetch(`${base}/api/v1/things`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ pad: 'x'.repeat(100_000) }) });
      assert.equal(posted.status, 503, 'a request with a body: 503 too');
      await posted.arrayBuffer();

      router.add('GET', '/readyz', async ({ res }) => sendJson(res, 200, { ready: true }));
      const added = await fetch(`${base}/readyz`);
      assert.equal(added.status, 200, 'a route added during the start is served at once');
      await added.arrayBuffer();
      const stillStarting = await fetch(`${base}/nothing-here`);
      assert.equal(stillStarting.status, 503, 'an unknown path while routes are pending: 503');
      await stillStarting.arrayBuffer();

      http.routesComplete();
      const unknown = await fetch(`${base}/nothing-here`);
      assert.equal(unknown.status, 404, 'every route added: an unknown path is a 404');
      assert.equal(unknown.headers.get('retry-after'), null, 'no Retry-After on a 404');
      await unknown.arrayBuffer();
      // the one WARN expected is the call without a token's
      const alarms = logged.filter((l) => / (WARN|ERROR) /.test(l) && !/API calls refused: no or a wrong operator token/.test(l));
      assert.deepEqual(alarms, [], "the start's refusals are no dependency down nor a fault: no WARN or ERROR");
    } finally {
      await http.stop();
    }
  });

  it('without routesPending (a server whose routes are complete before it starts), an unknown path is a 404 at once', async () => {
    const http = new HttpServer({ port: 0, host: '127.0.0.1', router: new Router(), operatorToken: TOKEN, logger: createLogger({ level: 'silent' }) });
    await http.start();
    try {
      const res = await fetch(`http://127.0.0.1:${http.port}/nothing-here`);
      assert.equal(res.status, 404, 'no start phase: 404');
      await res.arrayBuffer();
    } finally {
      await http.stop();
    }
  });
});
