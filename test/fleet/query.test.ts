/** The fleet query language: parsing, positions in errors, and matching. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { parseQuery, type QuerySubject } from '../../src/fleet/query.ts';

const subject = (over: Partial<QuerySubject['device']> = {}, reported?: Record<string, unknown>): QuerySubject => ({
  device: { deviceId: 'dev-1', attributes: { model: 'x2', ram: 512, beta: true }, tags: ['canary', 'region:eu'], ...over },
  ...(reported ? { reported: reported as never } : {}),
});
const sw = (version: string, status = 'IDLE') => ({ software: { name: 'fw', version, status } });
const matches = (q: string, s: QuerySubject) => parseQuery(q).matches(s);

describe('fleet query', () => {
  it('compares versions by semantic-version precedence, not as text', () => {
    const q = 'reported.software.version < 2.0.0 and tags.region = eu';
    assert.equal(matches(q, subject({}, sw('1.10.0'))), true);
    assert.equal(matches(q, subject({}, sw('10.0.0'))), false, '"10.0.0" < "2.0.0" as text, not as a version');
    assert.equal(matches(q, subject({}, sw('2.0.0-rc.1'))), true, 'a prerelease precedes its release');
    assert.equal(matches(q, subject({ tags: ['region:us'] }, sw('1.0.0'))), false);
    assert.equal(matches('reported.software.version >= 2', subject({}, sw('2.0.0'))), true, '2 reads as 2.0.0 on a version field');
    assert.equal(matches('reported.software.version > 2.1', subject({}, sw('2.0.9'))), false);
  });

  it('matches attributes (typed), tags, device ids, in-lists, exists, not and parentheses', () => {
    const s = subject({}, sw('1.0.0', 'FAILURE'));
    assert.equal(matches('attributes.ram >= 256 and attributes.ram < 1024', s), true, 'numbers compare numerically');
    assert.equal(matches('attributes.beta = true', s), true);
    assert.equal(matches('attributes.model in (x1, x2)', s), true);
    assert.equal(matches('tags = canary', s), true);
    assert.equal(matches('tags = prod', s), false);
    assert.equal(matches('deviceId = "dev-1"', s), true);
    assert.equal(matches("not reported.software.status = 'FAILURE'", s), false);
    assert.equal(matches('(tags = prod or attributes.model == x2) and reported.software exists', s), true);
  });

  it('treats a missing field as matching nothing but != and not', () => {
    const s = subject();
    assert.equal(matches('reported.software.version < 9.9.9', s), false);
    assert.equal(matches('attributes.color = red', s), false);
    assert.equal(matches('attributes.color != red', s), true);
    assert.equal(matches('not desired.software exists', s), true);
  });

  it('reads own fields only: inherited object machinery matches nothing', () => {
    const s = subject({}, sw('1.0.0'));
    assert.equal(matches('attributes.constructor exists', s), false);
    assert.equal(matches('reported.toString exists', s), false);
    assert.equal(matches('reported.software.constructor exists', s), false);
  });

  it('reports the position of a parse error', () => {
    const cases: [string, RegExp][] = [
      ['reported.software.version <', /position 28: expected a value after "<", found the end of the query/],
      ['tags.region = eu and', /position 21: expected a field/],
      ['color = red', /position 1: unknown field "color"/],
      ['(tags = a or tags = b', /position 22: expected "\)" to close the "\(" at position 1/],
      ['tags = a tags = b', /position 10: expected "and", "or" or the end/],
      ['attributes.x in (1, 2', /position 22: expected "," or "\)"/],
      ['deviceId = "open', /position 12: unterminated string/],
      ['deviceId ! x', /position 10: unexpected "!"/],
      ['deviceId = a & b', /position 14: unexpected character "&"/],
      ['', /it is empty/],
    ];
    for (const [q, re] of cases) {
      assert.throws(() => parseQuery(q), (err: unknown) => err instanceof UpdraftError && err.status === 400 && re.test(err.message), q);
    }
  });

  it('says whether it needs shadow state', () => {
    assert.equal(parseQuery('tags = a or attributes.x = 1').needsShadow, false);
    assert.equal(parseQuery('tags = a or not reported.software.version = 1.0.0').needsShadow, true);
  });
});
