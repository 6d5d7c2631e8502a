/**
 * jsonDefect (src/protocol/json.ts): the walk that checks a parsed value's depth and numbers
 * builds no path while it finds nothing, and names a non-finite number by its path once it
 * finds one, walking again: that second walk must be as deep-proof as the first.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonDefect, type JsonValue } from '../../src/protocol/json.ts';

const parse = (text: string) => JSON.parse(text) as JsonValue;

describe('jsonDefect', () => {
  it('finds nothing in a report without defects', () => {
    const report = parse('{"software":{"name":"fw","version":"2.4.1","size":18350080,"progress":0.5,"error":null,"waiting":{"reason":"busy","count":2}},"list":[1,[2,{"x":-0}]]}');
    assert.equal(jsonDefect(report, 6, 'state.reported'), undefined);
    assert.equal(jsonDefect(5, 6, 'v'), undefined);
    assert.equal(jsonDefect('s', 6, 'v'), undefined);
  });

  it('names a non-finite number by its path, through objects and arrays', () => {
    assert.deepEqual(jsonDefect(parse('{"big":1e999}'), 6, 'state.reported'), { kind: 'number', path: 'state.reported.big' });
    assert.deepEqual(jsonDefect(parse('{"cfg":{"list":[1,{"low":-1e400}]}}'), 6, 'state.desired'), { kind: 'number', path: 'state.desired.cfg.list[1].low' });
    assert.deepEqual(jsonDefect(parse('{"a":{"ok":1},"b":[[0,[7,1e999]]],"c":"x"}'), 6, 'r'), { kind: 'number', path: 'r.b[0][1][1]' });
    assert.deepEqual(jsonDefect(parse('[1,2,1e999]'), 6, 'devices'), { kind: 'number', path: 'devices[2]' });
    assert.deepEqual(jsonDefect(Infinity, 6, 'n'), { kind: 'number', path: 'n' });
  });

  it('tells a container past the depth before a number inside it', () => {
    assert.deepEqual(jsonDefect(parse('{"a":{"b":{"c":{"d":1e999}}}}'), 3, 'r'), { kind: 'depth' });
    assert.deepEqual(jsonDefect(parse('{"a":{"b":{"c":1e999}}}'), 3, 'r'), { kind: 'number', path: 'r.a.b.c' });
  });

  it('names a number at the bottom of half a million levels without overflowing the stack', () => {
    const n = 500_000;
    const value = parse('['.repeat(n) + '1e999' + ']'.repeat(n));
    const defect = jsonDefect(value, Infinity, 'a');
    assert.equal(defect?.kind, 'number');
    const path = defect?.kind === 'number' ? defect.path : '';
    assert.equal(path.length, 1 + 3 * n);
    assert.ok(path === 'a' + '[0]'.repeat(n));
    assert.deepEqual(jsonDefect(parse('{"a":'.repeat(n) + '-1e999' + '}'.repeat(n)), Infinity, 'r'), { kind: 'number', path: 'r' + '.a'.repeat(n) });
  });
});
