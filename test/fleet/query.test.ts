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

  it('keeps a bare version as written: 2.10 is 2.10.0, not 2.1', () => {
    const v = (q: string, version: string) => matches(q, subject({}, sw(version)));
    assert.equal(v('reported.software.version = 2.10', '2.10.0'), true);
    assert.equal(v('reported.software.version = 2.10', '2.1.0'), false, '2.10 read as the number 2.1');
    assert.equal(v('reported.software.version = 2.1', '2.1.0'), true);
    assert.equal(v('reported.software.version < 1.10', '1.9.0'), true, '1.9.0 precedes 1.10.0');
    assert.equal(v('reported.software.version < 1.10', '1.10.0'), false);
    assert.equal(v('reported.software.version in (2.10, 3)', '2.10.0'), true);
    assert.equal(v('reported.software.version in (2.10, 3)', '2.1.0'), false);
    // a number kept as written compares with a JSON number by its exact value
    assert.equal(matches('reported.ratio = 1.10', subject({}, { ratio: 1.1 })), true);
    assert.equal(matches('reported.ratio > 1.09', subject({}, { ratio: 1.1 })), true);
  });

  it('compares ids and tags as text: deviceId = 7 is the device 7 only', () => {
    for (const id of ['007', '0x7', '7.0', ' 7', '7e0', '+7']) assert.equal(matches('deviceId = 7', subject({ deviceId: id })), false, id);
    assert.equal(matches('deviceId = 7', subject({ deviceId: '7' })), true);
    assert.equal(matches('deviceId = 10', subject({ deviceId: '1e1' })), false);
    assert.equal(matches('deviceId in (7, 8)', subject({ deviceId: '007' })), false);
    assert.equal(matches('deviceId = 007', subject({ deviceId: '007' })), true);
    assert.equal(matches('deviceId > 9', subject({ deviceId: '10' })), false, 'ids order as text: "10" < "9"');
    assert.equal(matches('tags.rev = 16', subject({ tags: ['rev:0x10'] })), false);
    assert.equal(matches('tags.rev = 16', subject({ tags: ['rev:16'] })), true);
    assert.equal(matches('tags.beta = true', subject({ tags: ['beta:true'] })), true, 'a tag value is text: true is its text');
    assert.equal(matches('tags = 7', subject({ tags: ['007'] })), false);
  });

  it('never compares text through Number(): a bare number equals a JSON number or the same plain text', () => {
    const serial = (v: unknown) => subject({ attributes: { serial: v as string } });
    for (const other of ['00123', '0x7B', '1.23e2', ' 123 ', '0b1111011', '123.0', '+123', '0o173']) {
      assert.equal(matches('attributes.serial = 123', serial(other)), false, `= 123 against "${other}"`);
      assert.equal(matches('attributes.serial != 123', serial(other)), true, `!= 123 against "${other}"`);
      assert.equal(matches('attributes.serial > 100', serial(other)), false, `> 100 against "${other}": not a number, not ordered`);
      assert.equal(matches('attributes.serial = "00123"', serial(other)), other === '00123', `= "00123" against "${other}"`);
    }
    assert.equal(matches('attributes.serial = 123', serial(123)), true);
    assert.equal(matches('attributes.serial = 123', serial('123')), true, 'a string written as the number is written');
    assert.equal(matches('attributes.serial > 100', serial('123')), true);
    assert.equal(matches('attributes.serial < 20', serial('123')), false, 'ordered as numbers, not as text');
    assert.equal(matches('attributes.serial = 00123', serial('00123')), true, 'a padded number is its text');
    assert.equal(matches('attributes.serial = 00123', serial('123')), false);
    assert.equal(matches('attributes.serial = 00123', serial(123)), true, 'and the same value as a JSON number');
    // a quoted value is text: never a number
    assert.equal(matches('attributes.serial = "123"', serial(123)), false);
    assert.equal(matches('attributes.serial = "123"', serial('123')), true);
    assert.equal(matches('attributes.serial in ("00123", x)', serial(123)), false);
    // beyond 2^53: exact, never through a double
    assert.equal(matches('attributes.serial = 9007199254740993', serial('9007199254740992')), false);
    assert.equal(matches('attributes.serial = 9007199254740993', serial(9007199254740992)), false);
    assert.equal(matches('attributes.serial > 9007199254740992', serial('9007199254740993')), true);
    assert.equal(matches('attributes.serial = 9007199254740993', serial('9007199254740993')), true);
    assert.equal(matches('attributes.serial = 9007199254740992', serial(9007199254740992)), true);
    assert.equal(matches('attributes.serial = 100000000000000000000000', serial(1e23)), false, '1e23 is 99999999999999991611392 as a double');
    assert.equal(matches('reported.tiny < 0.000001', subject({}, { tiny: 1.5e-7 })), true);
    assert.equal(matches('reported.tiny = 0.00000015', subject({}, { tiny: 1.5e-7 })), true);
    assert.equal(matches('attributes.x = -0', subject({ attributes: { x: 0 } })), true);
    assert.equal(matches('attributes.x < -1.5', subject({ attributes: { x: -2 } })), true);
    assert.equal(matches('attributes.x < -1.5', subject({ attributes: { x: '-2' } })), true);
    assert.equal(matches('attributes.x > -1.5', subject({ attributes: { x: -1.25 } })), true);
  });

  it('matches booleans with booleans only', () => {
    const hw = (v: unknown) => subject({ attributes: { hw: v as string } });
    assert.equal(matches('attributes.hw = true', hw('true')), false, 'the string "true" is text');
    assert.equal(matches('attributes.hw != true', hw('true')), true);
    assert.equal(matches('attributes.hw = true', hw(true)), true);
    assert.equal(matches('attributes.hw = true', hw(1)), false);
    assert.equal(matches('attributes.hw = false', hw(false)), true);
    assert.equal(matches('attributes.hw = "true"', hw(true)), false, 'quoted: text');
    assert.equal(matches('attributes.hw = "true"', hw('true')), true);
    assert.equal(matches('attributes.hw < true', hw(false)), false, 'booleans are not ordered');
  });

  it('never takes an empty or blank quoted value for 0', () => {
    const serial = (v: unknown) => subject({ attributes: { serial: v as string } });
    assert.equal(matches('attributes.serial = ""', serial('')), true);
    assert.equal(matches('attributes.serial = ""', serial(0)), false);
    assert.equal(matches('attributes.serial = ""', serial('0')), false);
    assert.equal(matches('attributes.serial = " "', serial(0)), false);
    assert.equal(matches('attributes.serial = " "', serial('0')), false);
    assert.equal(matches('attributes.serial = " "', serial(' ')), true);
    assert.equal(matches("attributes.serial in ('', ' ')", serial(0)), false);
    assert.equal(matches('attributes.serial <= ""', serial(0)), false);
    assert.equal(matches('attributes.serial = 0', serial('')), false);
    assert.equal(matches('attributes.serial = 0', serial(' ')), false);
  });

  it('compares text as text, case and all', () => {
    assert.equal(matches('attributes.model = X2', subject()), false);
    assert.equal(matches('attributes.model = x2', subject()), true);
    assert.equal(matches('attributes.model > x1', subject()), true);
    assert.equal(matches('attributes.ram = "512"', subject()), false, 'a quoted value never equals a number');
  });

  it('matches any element of an array; [] and null are missing, objects match nothing', () => {
    const s = subject({}, { list: ['a', 7, true, { x: 1 }], empty: [], nothing: null, obj: { a: 1 } });
    assert.equal(matches('reported.list = a', s), true);
    assert.equal(matches('reported.list = 7', s), true);
    assert.equal(matches('reported.list = true', s), true);
    assert.equal(matches('reported.list = b', s), false);
    assert.equal(matches('reported.list != a', s), false, 'one element equals it');
    assert.equal(matches('reported.list.x exists', s), false, 'a dot does not step into an array: [*].x does');
    assert.equal(matches('reported.list.0 exists', s), false, 'an index is [0]');
    assert.equal(matches('reported.empty exists', s), false);
    assert.equal(matches('reported.empty != a', s), true);
    assert.equal(matches('reported.nothing exists', s), false);
    assert.equal(matches('reported.obj exists', s), true);
    assert.equal(matches('reported.obj = a', s), false);
  });

  it('skips null elements: an array of nulls is missing like [], exists only with a value in it', () => {
    const s = subject({}, { nulls: [null], twoNulls: [null, null], nested: [[], [null]], mixed: [null, 'a'], zero: [0], no: [false], blank: [''], objs: [{}] });
    for (const f of ['nulls', 'twoNulls', 'nested']) {
      assert.equal(matches(`reported.${f} exists`, s), false, `${f} holds no value`);
      assert.equal(matches(`not reported.${f} exists`, s), true);
      assert.equal(matches(`reported.${f} != a`, s), true);
      assert.equal(matches(`reported.${f} = a`, s), false);
    }
    assert.equal(matches('reported.mixed exists', s), true);
    assert.equal(matches('reported.mixed = a', s), true);
    // values, though falsy, and objects (as a field holding an object) exist
    for (const f of ['zero', 'no', 'blank', 'objs']) assert.equal(matches(`reported.${f} exists`, s), true, f);
  });

  it('counts positions in characters and names a character outside quotes whole', () => {
    const err = (q: string) => {
      try {
        parseQuery(q);
      } catch (e) {
        return (e as Error).message;
      }
      return 'no error';
    };
    assert.equal(err('tags = 😀'), 'invalid query at position 8: unexpected character "😀" (U+1F600)');
    assert.equal(err('tags = "😀" and ^'), 'invalid query at position 16: unexpected character "^" (U+005E)');
    assert.equal(err('tags = "😀😀" and'), 'invalid query at position 16: expected a field such as reported.software.version, found the end of the query');
    assert.equal(err('tags = "é'), 'invalid query at position 8: unterminated string starting with "');
    assert.equal(matches('tags = "😀"', subject({ tags: ['😀'] })), true, 'quoted, any character is text');
    assert.equal(err('😀'.repeat(4096)), 'invalid query at position 1: unexpected character "😀" (U+1F600)', '4096 characters are within the bound');
    assert.match(err('😀'.repeat(4097)), /longer than 4096 characters/);
  });

  it('steps into arrays with [n], [*] and [condition], and reads quoted keys', () => {
    const s = subject({}, {
      modules: [{ name: 'modem', version: '1.2.0', parts: [{ id: 'a' }] }, { name: 'wifi', version: '1.0', parts: [] }, null],
      grid: [[1, 2], [3]],
      'fw-version': '2.0',
      'a.b': { 'c d': 'x' },
      text: 'abc',
    });
    assert.equal(matches('reported.modules[0].name = modem', s), true);
    assert.equal(matches('reported.modules[1].version = 1', s), true, 'the last key names a version: 1 is 1.0.0, as is "1.0"');
    assert.equal(matches('reported.modules[2] exists', s), false, 'a null element is missing');
    assert.equal(matches('reported.modules[3] exists', s), false, 'past the end');
    assert.equal(matches('reported.modules[*].version > 1.1', s), true);
    assert.equal(matches('reported.modules[name = wifi].version > 1.1', s), false);
    assert.equal(matches('reported.modules[name = modem and version < 1.3] exists', s), true);
    assert.equal(matches('reported.modules[not name = modem].name = wifi', s), true);
    assert.equal(matches('reported.modules[parts[id = a] exists].name = modem', s), true, 'conditions nest: fields in the inner element');
    assert.equal(matches('reported.modules[parts[*] exists].name = wifi', s), false);
    assert.equal(matches('reported.modules[name in (gps, wifi)].version = 1.0.0', s), true);
    assert.equal(matches('reported.grid[1][0] = 3', s), true);
    assert.equal(matches('reported.grid[*] = 2', s), true, 'an array element that is an array matches by its elements');
    assert.equal(matches('reported.text[0] exists or reported.text[*] exists or reported.text[x = 1] exists', s), false, 'a string has no elements');
    assert.equal(matches('reported."fw-version" >= 2', s), true);
    assert.equal(matches(`reported.'a.b'."c d" = x`, s), true);
    assert.equal(matches('reported.a.b exists', s), false, 'a dot separates keys: "a.b" is quoted');
    assert.equal(matches('attributes."model" = x2 and tags."region" = eu', s), true, 'a quoted name is the bare one');
    assert.equal(parseQuery('reported.modules[name = modem].version < 1').needsShadow, true);
  });

  it('refuses malformed paths, naming the position', () => {
    const cases: [string, string][] = [
      ['reported.m[0 = x', 'position 17: expected "]" to close the "[" at position 11, found the end of the query'],
      ['reported.m[0', 'position 13: expected "]" to close the "[" at position 11, found the end of the query'],
      ['reported.m[', 'position 12: "[" at position 11 is not closed'],
      ['reported.m[-1] exists', 'position 12: an index counts elements from 0: -1 is negative'],
      ['reported.m[1.5] exists', 'position 12: an index is a whole number from 0, not 1.5'],
      ['reported.m[99999999999999999999] exists', 'position 12: index 99999999999999999999 is too large'],
      ['reported.m[] exists', 'position 12: empty "[]"'],
      ['reported.m[(] exists', 'position 13: expected a field of the element'],
      ['deviceId[0] = x', 'position 9: deviceId is text, not an array'],
      ['tags[0] = a', 'position 5: tags has no elements to index'],
      ['tags.region[*] = eu', "position 12: a tag's value is text, not an array: tags.region has no elements to index"],
      ['attributes."a b"[0] = x', 'position 17: attributes hold text, numbers and booleans, never arrays: attributes."a b" has no elements to index'],
      ['reported. "x" = 1', 'position 9: "." is not followed by a name'],
      ['reported."x"y = 1', 'position 13: expected "." or "[" between the parts of a field, found "y"'],
      ['reported.a..b = 1', 'position 12: empty name in "reported.a..b"'],
      ['reported.m [0] = 1', 'position 12: expected an operator (=, !=, <, <=, >, >=, in, exists) after reported.m, found "["'],
      ['reported[0] = 1', 'position 1: "reported" needs a path'],
      ['"reported".x = 1', 'position 1: expected a field such as reported.software.version, found "reported"'],
      ['reported.m[0] = 1]', 'position 18: expected "and", "or" or the end of the query, found "]"'],
    ];
    for (const [q, message] of cases) {
      assert.throws(() => parseQuery(q), (err: unknown) => err instanceof UpdraftError && err.status === 400 && err.message.startsWith(`invalid query at ${message}`), q);
    }
  });

  it('says whether it needs shadow state', () => {
    assert.equal(parseQuery('tags = a or attributes.x = 1').needsShadow, false);
    assert.equal(parseQuery('tags = a or not reported.software.version = 1.0.0').needsShadow, true);
  });
});
