/**
 * Every `/api/` route the server registers has its OpenAPI entry, with its method, and every
 * entry is a route: route-contract.ts checks a route's query and body against its entry, so a
 * route without one took any query parameter and any body, unchecked. Walks the router of a
 * real server, and asks every route over real HTTP with a parameter it does not take (and,
 * where it takes none, a body): each refuses before it acts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

type Document = { paths: Record<string, Record<string, { requestBody?: unknown }>> };

describe('the OpenAPI document and the routes', () => {
  let ts: TestServer;
  let doc: Document;
  /** `METHOD /api/v1/devices/:id`, as the router lists them. */
  let routes: string[];
  const call = async (method: string, route: string, body?: string) => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}` }, ...(body !== undefined ? { body } : {}) });
    return { status: res.status, message: ((await res.json()) as { error?: { message: string } }).error?.message };
  };

  before(async () => {
    ts = await startTestServer();
    routes = ts.server.http.router.list().filter((r) => r.split(' ')[1]!.startsWith('/api/'));
    const res = await fetch(`${ts.httpUrl}/api/v1/openapi.json`, { headers: { authorization: `Bearer ${ts.token}` } });
    doc = (await res.json()) as Document;
  });
  after(() => ts.close());

  /** Every entry of the document, in the router's form. */
  const documented = () => Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{([^}]+)\}/g, ':$1')}`));

  it('documents every /api/ route with its method, and each entry is a route, once', () => {
    assert.ok(routes.length > 50, `the routes are listed (${routes.length})`);
    assert.deepEqual(routes.filter((r) => !documented().includes(r)), [], 'routes the OpenAPI document does not describe');
    assert.deepEqual(documented().filter((d) => !routes.includes(d)), [], 'entries of the document no route serves');
    assert.deepEqual(routes.filter((r, i) => routes.indexOf(r) !== i), [], 'routes registered twice (the second is never reached)');
  });

  it('every /api/ route refuses a query parameter it does not take, before it acts', async () => {
    const answers = [];
    for (const route of routes) {
      const [method, pattern] = route.split(' ') as [string, string];
      const r = await call(method, `${pattern.replace(/:[^/]+/g, 'p-1')}?zz-probe=1`);
      answers.push(`${route} ${r.status} ${r.message?.replace(/ \(.*\)$/, '')}`);
    }
    assert.deepEqual(answers, routes.map((r) => `${r} 400 unknown query parameter "zz-probe"`));
  });

  it('every /api/ route documented without a body refuses one, before it acts (GET bodies are not read)', async () => {
    const bodiless = routes.filter((r) => {
      const [method, pattern] = r.split(' ') as [string, string];
      const path = pattern.replace(/:([^/]+)/g, '{$1}');
      return method !== 'GET' && doc.paths[path]?.[method.toLowerCase()]?.requestBody === undefined;
    });
    assert.ok(bodiless.length >= 10, `routes that take no body (${bodiless.length})`);
    const answers = [];
    for (const route of bodiless) {
      const [method, pattern] = route.split(' ') as [string, string];
      const r = await call(method, pattern.replace(/:[^/]+/g, 'p-1'), '{"zz-probe":1}');
      answers.push(`${route} ${r.status} ${r.message?.replace(/^.* takes no/, 'takes no')}`);
    }
    assert.deepEqual(answers, bodiless.map((r) => `${r} 400 takes no request body: "zz-probe" refused, not dropped; send none, or {}`));
  });
});
