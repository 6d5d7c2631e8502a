import assert from 'node:assert/strict';
import { test } from 'node:test';
import { probability, wholeNumber } from '../../src/util/number-text.ts';

test('wholeNumber takes digits within the bounds and nothing else', () => {
  assert.equal(wholeNumber('0', 0, 10), 0);
  assert.equal(wholeNumber('10', 1, 10), 10);
  assert.equal(wholeNumber('007', 1, 10), 7);
  for (const bad of ['', ' 5', '5 ', '2.5', '1e3', '-1', '+1', '0x10', 'abc', '11', '0']) {
    assert.equal(wholeNumber(bad, 1, 10), undefined, `'${bad}'`);
  }
  assert.equal(wholeNumber('9007199254740993', 0, Number.MAX_SAFE_INTEGER), undefined, 'beyond 2^53: not exact');
});

test('probability takes decimal numbers from 0 to 1', () => {
  assert.equal(probability('0'), 0);
  assert.equal(probability('1'), 1);
  assert.equal(probability('0.05'), 0.05);
  assert.equal(probability('.5'), 0.5);
  assert.equal(probability('+0.5'), 0.5);
  assert.equal(probability('1e-3'), 0.001);
  for (const bad of ['', ' ', '5%', '1.5', '-0.1', 'NaN', 'Infinity', '0x1', '1/2']) {
    assert.equal(probability(bad), undefined, `'${bad}'`);
  }
});
