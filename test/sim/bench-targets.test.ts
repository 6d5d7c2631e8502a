/**
 * The bench's verdict on the benchmark issue's targets: met, not met, or not run (a target
 * the run did not measure is never "met").
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeTargets, type TargetInput } from '../../bench/targets.ts';

const verdicts = (run: TargetInput) => judgeTargets(run).map((v) => v.verdict);

describe('bench targets', () => {
  // the fifteenth session's medians (a fast hour)
  const measured: TargetInput = {
    system: 'embedded',
    updates: [
      { devices: 5000, updates_per_s: 1585, p99_ms: 870, rss_kb_per_device: 36.4, lost: 0 },
      { devices: 15000, updates_per_s: 1772, p99_ms: 960, rss_kb_per_device: 28.6, lost: 0 },
    ],
    efficiency: 0.18,
    rollout: { devices: 100_000, seconds: 144.8, lost: 0 },
    lost: 0,
  };

  it('judges a run that misses the rate, efficiency and rollout targets and meets lost and memory', () => {
    const v = judgeTargets(measured);
    assert.deepEqual(
      v.map((x) => x.verdict),
      ['not met', 'not met', 'not met', 'not met', 'met', 'met'],
    );
    assert.equal(v[0]!.figure, '1,585/s at 5,000, 1,772/s at 15,000');
    // p99 under a second, but not at 2,000 updates/s: the target is not met
    assert.equal(v[2]!.figure, '870 ms at 1,585/s, 960 ms at 1,772/s');
    assert.equal(v[3]!.figure, '100,000 devices in 144.8 s');
  });

  it('meets each target at its bound, and misses it just past', () => {
    const at: TargetInput = {
      system: 'embedded',
      updates: [{ devices: 15000, updates_per_s: 2000, p99_ms: 999, rss_kb_per_device: 39.9, lost: 0 }],
      efficiency: 0.5,
      rollout: { devices: 100_000, seconds: 89.9, lost: 0 },
      lost: 0,
    };
    assert.deepEqual(verdicts(at), ['met', 'met', 'met', 'met', 'met', 'met']);
    const past: TargetInput = {
      system: 'embedded',
      updates: [{ devices: 15000, updates_per_s: 1999, p99_ms: 1000, rss_kb_per_device: 40, lost: 1 }],
      efficiency: 0.49,
      rollout: { devices: 100_000, seconds: 90, lost: 0 },
      lost: 1,
    };
    assert.deepEqual(verdicts(past), ['not met', 'not met', 'not met', 'not met', 'not met', 'not met']);
    // a fast run whose p99 is over a second, beside a slow one under it: not met
    const split: TargetInput = { ...at, updates: [{ ...at.updates[0]!, p99_ms: 1200 }, { devices: 5000, updates_per_s: 900, p99_ms: 500, rss_kb_per_device: 30, lost: 0 }] };
    assert.equal(judgeTargets(split)[2]!.verdict, 'not met');
  });

  it('says "not run" for what the run did not measure, never "met"', () => {
    const small: TargetInput = { ...measured, rollout: { devices: 20_000, seconds: 10, lost: 0 } };
    assert.equal(judgeTargets(small)[3]!.verdict, 'not run', 'a 20,000-device rollout says nothing of 100,000');
    // memory per device on a small fleet is mostly the process's fixed cost: judged from 5,000
    const fewDevices: TargetInput = { ...measured, updates: [{ devices: 2000, updates_per_s: 654, p99_ms: 1723, rss_kb_per_device: 57, lost: 0 }] };
    assert.equal(judgeTargets(fewDevices)[5]!.verdict, 'not run');
    assert.equal(judgeTargets(fewDevices)[5]!.figure, '57 KB at 2,000');
    const mixed: TargetInput = { ...measured, updates: [fewDevices.updates[0]!, ...measured.updates] };
    assert.equal(judgeTargets(mixed)[5]!.verdict, 'met', '36.4 and 28.6 KB at 5,000 and 15,000');
    // no update scenario (a store-only run, --sizes 0): lost = 0 measured nothing either
    const none: TargetInput = { system: 'embedded', updates: [], lost: 0 };
    assert.deepEqual(verdicts(none), ['not run', 'not run', 'not run', 'not run', 'not run', 'not run']);
    assert.equal(judgeTargets(none)[4]!.figure, 'no update scenario');
    const rolloutOnly: TargetInput = { system: 'embedded', updates: [], rollout: { devices: 20_000, seconds: 10, lost: 0 }, lost: 0 };
    assert.equal(judgeTargets(rolloutOnly)[4]!.verdict, 'met', 'a rollout alone counts its lost devices');
    // the rate, latency and rollout targets are the embedded system's
    const external: TargetInput = { ...measured, system: 'external', updates: [{ devices: 15000, updates_per_s: 2500, p99_ms: 500, rss_kb_per_device: 20, lost: 0 }], rollout: { devices: 100_000, seconds: 80, lost: 0 } };
    assert.deepEqual(verdicts(external), ['not run', 'not met', 'not run', 'not run', 'met', 'met']);
  });
});
