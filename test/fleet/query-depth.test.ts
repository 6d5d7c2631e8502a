/**
 * A query nested deeply (parentheses, `[...]` conditions) within the 4,096-character cap is a
 * 400 naming where it goes too deep, through the real API, never a stack overflow: the parser
 * recursed some frames per level, and a query left open at the cap (2,042 levels of `a[`,
 * 4,084 of `(`; measured: from about 1,200 and 3,200) threw a RangeError, answered 500
 * "Maximum call stack size exceeded". At most 64 levels, both kinds together, are taken.
 * Real server on SQLite, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const CAP = 4096;
/** `n` parentheses around a comparison, closed or not, at most CAP characters. */
const parens = (n: number, closed = true) => '('.repeat(n) + 'deviceId = x' + (closed ? ')'.repeat(n) : '');
/** `n` nested `[...]` conditions in reported.a (`reported.a[a[a=1]=1]=1`), closed or not. */
const brackets = (n: number, closed = true) => 'reported.a' + '[a'.repeat(n) + (closed ? '=1' + ']=1'.repeat(n) : '');

describe('fleet query nesting depth', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => ts?.close());

  const api = async (method: string, route: string, body?: unknown) => {
    const res = await fetch(ts.httpUrl + route, {
      method,
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as { error?: { message?: string }; items?: unknown[] } };
  };
  const listing = (query: string) => api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent(query)}`);

  it('refuses nesting at the length cap with a 400 naming the position of the level too deep', async () => {
    const cases: [string, string, number][] = [
      // position of the 65th "(": 65; of the 65th "[": after "reported.a" and 64 "[a"
      ['parentheses, closed', parens(Math.floor((CAP - 12) / 2)), 65],
      ['parentheses, never closed', parens(CAP - 12, false), 65],
      ['[...] conditions, closed', brackets(Math.floor((CAP - 12) / 5)), 11 + 64 * 2],
      ['[...] conditions, never closed', brackets((CAP - 10) / 2 - 1, false), 11 + 64 * 2],
      // both kinds count together: 40 parentheses, then conditions from the 25th on too deep
      ['both', '('.repeat(40) + brackets(1_000, false), 40 + 11 + 24 * 2],
    ];
    const answers: [string, number, string | undefined][] = [];
    for (const [name, query] of cases) {
      assert.ok(query.length <= CAP, `${name}: ${query.length} characters`);
      const r = await listing(query);
      answers.push([name, r.status, r.body.error?.message]);
    }
    // before: 200 for the closed ones, 500 "Maximum call stack size exceeded" for the open "a[" (for the
    // open "(" too, or a 400 at the end: the stack is just enough there, depending on the JIT)
    assert.deepEqual(
      answers,
      cases.map(([name, , pos]) => [name, 400, `invalid query at position ${pos}: nested more than 64 levels deep (parentheses and [...] conditions together)`]),
    );
    // a group is parsed alike
    const group = await api('POST', '/api/v1/groups', { name: 'deep', query: brackets(2_000, false) });
    assert.equal(group.status, 400, JSON.stringify(group.body).slice(0, 300));
    assert.match(group.body.error?.message ?? '', /nested more than 64 levels/);
    assert.equal((await api('GET', '/api/v1/fleet/devices')).status, 200, 'the server still answers');
  });

  it('takes 64 levels', async () => {
    assert.equal((await listing(parens(64))).status, 200);
    assert.equal((await listing(brackets(64))).status, 200);
    assert.equal((await listing('('.repeat(32) + brackets(32) + ')'.repeat(32))).status, 200);
  });
});
