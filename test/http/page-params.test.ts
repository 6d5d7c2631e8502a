/**
 * pageParams (src/http/paging.ts): `limit` is decimal digits in 1..1000 (Number() read `0x10`,
 * `1e2` and `  5` as 16, 100 and 5, though the message said "an integer"), and an `after`
 * cursor holding a NUL is refused before any store is asked. The router refuses a path
 * segment that decodes to one the same way.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { intParam, pageParams } from '../../src/http/paging.ts';
import { Router } from '../../src/http/router.ts';

const page = (query: string) => pageParams(new URL(`http://localhost/api/v1/devices?${query}`));

describe('pageParams', () => {
  it('takes a limit of decimal digits from 1 to 1000, and the default without one', () => {
    assert.deepEqual(page(''), { limit: 100 });
    assert.deepEqual(page('limit=1'), { limit: 1 });
    assert.deepEqual(page('limit=0050&after=dev-1'), { limit: 50, after: 'dev-1' });
    assert.deepEqual(page('limit=1000'), { limit: 1000 });
  });

  it('refuses any other limit, saying what it got', () => {
    for (const [raw, got] of [['0x10', '0x10'], ['1e2', '1e2'], ['%20%205', '  5'], ['5%20', '5 '], ['%2B5', '+5'], ['-1', '-1'], ['2.0', '2.0'], ['', ''], ['0', '0'], ['1001', '1001'], ['9'.repeat(400), '9'.repeat(400)]]) {
      assert.throws(() => page(`limit=${raw}`), { code: 'BAD_REQUEST', message: `limit must be an integer from 1 to 1000, got ${got}` }, raw);
    }
  });

  it('refuses a cursor holding a NUL', () => {
    assert.throws(() => page('after=a%00'), { code: 'BAD_REQUEST', message: 'after holds a NUL character (U+0000): it is no cursor a page gave' });
  });
});

describe('intParam', () => {
  it("reads every list route's numbers the same way: decimal digits within the route's bounds", () => {
    const url = (q: string) => new URL(`http://localhost/api/v1/broker/credentials?${q}`);
    assert.equal(intParam(url(''), 'limit', 1000, 1, 5000), 1000);
    assert.equal(intParam(url('limit=5000'), 'limit', 1000, 1, 5000), 5000);
    for (const raw of ['1e2', '0x10', '%205', '5001', '0']) {
      assert.throws(() => intParam(url(`limit=${raw}`), 'limit', 1000, 1, 5000), { code: 'BAD_REQUEST', message: `limit must be an integer from 1 to 5000, got ${decodeURIComponent(raw)}` }, raw);
    }
  });
});

describe('Router', () => {
  it('refuses a captured segment that decodes to a NUL, and decodes the rest as before', () => {
    const router = new Router().add('GET', '/api/v1/groups/:name', async () => {});
    assert.throws(() => router.match('GET', '/api/v1/groups/a%00b'), { code: 'BAD_REQUEST', message: 'the path segment "a%00b" holds a NUL character (U+0000): nothing stored holds one' });
    const found = router.match('GET', '/api/v1/groups/a%20b%F0%9F%98%80');
    assert.ok(found && 'params' in found);
    assert.deepEqual(found.params, { name: 'a b😀' });
  });
});
