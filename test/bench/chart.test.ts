/**
 * The bench's chart (bench/chart.ts): each axis has a scale from 0 with round steps that
 * covers the largest figure, and the SVG names every figure and every tick it draws.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { axisScale, renderChart } from '../../bench/chart.ts';

describe('bench chart', () => {
  it('scales each axis from 0 in steps of 1, 2 or 5 times a power of ten, 4 to 8 of them, up to or above the top', () => {
    for (const top of [1, 7.3, 99, 1015, 1139.65, 1772, 2400, 96_000]) {
      const { max, ticks } = axisScale(top);
      assert.equal(ticks[0], 0, `the axis of ${top} starts at 0`);
      assert.equal(ticks.at(-1), max, `the last tick of ${top} is the axis's top`);
      assert.ok(max >= top, `the axis of ${top} reaches it (max ${max})`);
      const step = ticks[1]! - ticks[0]!;
      const mantissa = step / 10 ** Math.floor(Math.log10(step));
      assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9), `a round step for ${top}: ${step}`);
      assert.ok(ticks.length - 1 >= 4 && ticks.length - 1 <= 8, `4 to 8 intervals for ${top}: ${ticks.join(',')}`);
      assert.ok(ticks.every((v, i) => i === 0 || Math.abs(v - ticks[i - 1]! - step) < 1e-9), `evenly spaced ticks for ${top}: ${ticks.join(',')}`);
    }
  });

  it('draws each fleet size with its rate and p99, and both axes with their ticks', () => {
    const svg = renderChart(
      [
        { devices: 5000, updatesPerS: 883, p99Ms: 1541 },
        { devices: 15000, updatesPerS: 991, p99Ms: 1454 },
      ],
      'a title',
    );
    for (const text of ['5,000', '15,000', '883/s', '991/s', 'p99 1541 ms', 'p99 1454 ms', 'a title']) assert.ok(svg.includes(`>${text}</text>`), `the chart shows ${text}`);
    // updates/s: 991 × 1.15 = 1,139.65 → 0 to 1,200 by 200; p99: 1,541 × 1.15 → 0 to 2,000 by 500
    for (const tick of ['200', '1,000', '1,200']) assert.ok(svg.includes(`fill="#4c78a8">${tick}</text>`), `the rate axis has a ${tick} tick`);
    for (const tick of ['500', '1,500', '2,000']) assert.ok(svg.includes(`fill="#e45756">${tick}</text>`), `the latency axis has a ${tick} tick`);
  });

  it('leaves out the latency of a fleet without one (a cycling rollout has no p99)', () => {
    const svg = renderChart([{ devices: 1000, updatesPerS: 500, p99Ms: Number.NaN }], 't');
    assert.ok(svg.includes('>500/s</text>'), 'the rate is drawn');
    assert.ok(!svg.includes('NaN'), `no NaN in the SVG: ${svg.match(/.{40}NaN.{20}/)?.[0]}`);
    assert.ok(!svg.includes('fill="#e45756">0</text>'), 'no latency scale without a latency');
  });
});
