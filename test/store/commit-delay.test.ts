/** The embedded store's group-commit window (commitDelay): at once for a lone writer, spaced under a fleet's load. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commitDelay } from '../../src/store/sqlite-store.ts';

describe('commitDelay', () => {
  it('commits a lone writer at once: a batch of one write never waits for the loaded interval', () => {
    // below 1 ms the store commits at the next setImmediate
    assert.ok(commitDelay({ ms: 0.4, end: 100, writes: 1 }, 100) < 1);
    assert.ok(commitDelay({ ms: 0.4, end: 100, writes: 7 }, 100.1) < 1);
  });

  it('spaces commits 8 ms apart after a batch of many writes, counted from the end of the last', () => {
    assert.equal(commitDelay({ ms: 0.5, end: 100, writes: 8 }, 100), 8);
    assert.equal(commitDelay({ ms: 0.5, end: 100, writes: 40 }, 103), 5);
    assert.ok(commitDelay({ ms: 0.5, end: 100, writes: 40 }, 109) < 1, 'the interval is over: at once');
  });

  it('waits as long as the last commit took, loaded or not, and never more than 20 ms', () => {
    assert.equal(commitDelay({ ms: 3, end: 100, writes: 1 }, 100), 3);
    assert.equal(commitDelay({ ms: 12, end: 100, writes: 50 }, 100), 12);
    assert.equal(commitDelay({ ms: 45, end: 100, writes: 1 }, 100), 20);
    assert.equal(commitDelay({ ms: 45, end: 100, writes: 500 }, 100), 20);
  });
});
