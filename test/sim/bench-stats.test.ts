/**
 * The bench's statistics: percentiles, and the medians of `npm run bench -- --repeat N`.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { combineRuns, median, percentile } from '../../bench/stats.ts';

describe('bench statistics', () => {
  it('takes the median of an odd and of an even number of values, in any order', () => {
    assert.equal(median([900, 1100, 1000]), 1000);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.equal(median([7]), 7);
    assert.ok(Number.isNaN(median([])));
  });

  it('takes the nearest-rank percentile', () => {
    const values = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 .. 1
    assert.equal(percentile(values, 50), 50);
    assert.equal(percentile(values, 99), 99);
    assert.equal(percentile(values, 100), 100);
  });

  it('combines runs: the median of each figure, the worst of `lost`, the range of the figures asked for', () => {
    const runs = [
      { system: 'embedded', devices: 5000, updates_per_s: 809, p99_ms: 1650, lost: 0 },
      { system: 'embedded', devices: 5000, updates_per_s: 1052, p99_ms: 1700, lost: 2 },
      { system: 'embedded', devices: 5000, updates_per_s: 989, p99_ms: 1820, lost: 0 },
    ];
    const { combined, ranges } = combineRuns(runs, { worst: ['lost'], ranges: ['updates_per_s'] });
    assert.deepEqual(combined, { system: 'embedded', devices: 5000, updates_per_s: 989, p99_ms: 1700, lost: 2 });
    assert.deepEqual(ranges, { updates_per_s: [809, 1052] });
    assert.equal(runs[0]!.updates_per_s, 809, 'the runs are left as they were');
  });

  it('leaves a figure some run lacks as the first run has it, and one run as it is', () => {
    const { combined } = combineRuns([{ replica_ops_per_s: 9000, p99_ms: NaN }, { replica_ops_per_s: 11000, p99_ms: 300 }] as { replica_ops_per_s: number; p99_ms: number }[]);
    assert.equal(combined.replica_ops_per_s, 10000);
    assert.equal(combineRuns([{ busy: 0.65 }, { busy: 0.78 }]).combined.busy, 0.715, 'a median of two is rounded, not 0.7150000000000001');
    assert.ok(Number.isNaN(combined.p99_ms), 'not the median of a NaN and a number');
    const one = { updates_per_s: 700, lost: 0 };
    assert.deepEqual(combineRuns([one], { worst: ['lost'], ranges: ['updates_per_s'] }), { combined: one, ranges: { updates_per_s: [700, 700] } });
    assert.throws(() => combineRuns([]), /at least one run/);
  });
});
