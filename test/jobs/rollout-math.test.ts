/** Wave boundaries, the rate allowance with ramp-up, the job-id scheme and request validation. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { agentJobId, parseAgentJobId } from '../../src/jobs/agent-job-id.ts';
import { parseJobRequest } from '../../src/jobs/job-spec.ts';
import { rateAllowance, rateCap, waveEnds, waveOf } from '../../src/jobs/rollout-math.ts';

const wave = (w: Record<string, number>) => ({ successThreshold: 0, requireApproval: false, ...w });

describe('rollout arithmetic', () => {
  it('cuts waves by count and cumulative percentage; the last wave takes the rest', () => {
    assert.deepEqual(waveEnds([wave({ count: 5 }), wave({ percent: 50 }), wave({ percent: 100 })], 100), [5, 50, 100]);
    assert.deepEqual(waveEnds([wave({ count: 5 }), wave({ percent: 10 }), wave({})], 20), [5, 5, 20], 'a wave never shrinks the rollout');
    assert.deepEqual(waveEnds([wave({ count: 50 }), wave({ percent: 30 })], 10), [10, 10]);
    assert.deepEqual(waveEnds([wave({ percent: 50 })], 3), [3], 'a single wave takes everyone');
    const ends = waveEnds([wave({ count: 2 }), wave({ percent: 50 }), wave({})], 10);
    assert.deepEqual([0, 1, 2, 4, 5, 9].map((i) => waveOf(ends, i)), [0, 0, 1, 1, 2, 2]);
  });

  it('integrates the ramped-up rate', () => {
    const plan = { maxPerMinute: 100, rampUp: { initialPerMinute: 10, factor: 2 } };
    assert.equal(rateAllowance(plan, 0), 1);
    assert.equal(rateAllowance(plan, 60_000), 11);
    assert.equal(rateAllowance(plan, 120_000), 31);
    assert.equal(rateAllowance(plan, 4 * 60_000), 1 + 10 + 20 + 40 + 80);
    assert.equal(rateAllowance(plan, 5 * 60_000), 1 + 10 + 20 + 40 + 80 + 100);
    assert.equal(rateAllowance(plan, 10 * 60_000), 1 + 150 + 600);
    assert.equal(rateAllowance({ maxPerMinute: 60 }, 30_000), 31);
    assert.equal(rateAllowance({}, 0), Infinity);
    assert.equal(rateAllowance({ rampUp: { initialPerMinute: 5, factor: 1 } }, 3 * 60_000), 16);
  });

  it('caps the unused allowance at a minute at the current rate, plus the one sent at once', () => {
    assert.equal(rateCap({ maxPerMinute: 60 }, 0), 61);
    assert.equal(rateCap({ maxPerMinute: 60 }, 10 * 3_600_000), 61, 'however long it built up');
    const plan = { maxPerMinute: 100, rampUp: { initialPerMinute: 10, factor: 2 } };
    assert.equal(rateCap(plan, 30_000), 11);
    assert.equal(rateCap(plan, 120_000), 41);
    assert.equal(rateCap(plan, 100 * 60_000), 101, 'the ramp ends at the maximum');
    assert.equal(rateCap({ rampUp: { initialPerMinute: 5, factor: 2 } }, 2 * 60_000), 21, 'a ramp-up without a maximum');
    assert.equal(rateCap({}, 60_000), Infinity);
  });

  it('names retries and control commands so that the agent sees new job ids', () => {
    const id = '5b0e4c3e-8f2a-4d0e-9a53-0f5a3c2b1d77';
    assert.equal(agentJobId(id, 1), id);
    assert.equal(agentJobId(id, 3), `${id}.3`);
    assert.deepEqual(parseAgentJobId(`${id}.3`), { jobId: id, attempt: 3 });
    assert.deepEqual(parseAgentJobId(`${id}.3.cancel`), { jobId: id, attempt: 3, control: 'cancel' });
    assert.deepEqual(parseAgentJobId(`${id}.rollback`), { jobId: id, attempt: 1, control: 'rollback' });
    assert.equal(parseAgentJobId(`${id}.x`), undefined);
  });

  it('validates a job request and reports every problem at once', () => {
    const now = Date.UTC(2026, 0, 1);
    const ok = parseJobRequest({ artifact: 'fw@2.0.0', targets: { query: 'tags = a' } }, now);
    assert.equal(ok.spec.type, 'snapshot');
    assert.equal(ok.spec.allowDowngrade, false);
    const bad = (body: Record<string, unknown>, re: RegExp) =>
      assert.throws(() => parseJobRequest({ artifact: 'fw@2.0.0', targets: { devices: ['d1'] }, ...body }, now), (e: unknown) => e instanceof UpdraftError && e.status === 400 && re.test(e.message), JSON.stringify(body));
    bad({ targets: {} }, /target set is empty/);
    bad({ targets: { query: 'version <' } }, /targets\.query: invalid query at position 1: unknown field "version"/);
    bad({ plan: { waves: [{ count: 1, successThreshold: 120 }, {}] } }, /plan\.waves\[0\]\.successThreshold must be a percentage from 0 to 100/);
    bad({ plan: { waves: [{ percent: 50 }, { percent: 20 }] } }, /must not be lower than an earlier wave's/);
    bad({ plan: { waves: [{}, {}] } }, /plan\.waves\[0\] needs count or percent/);
    bad({ plan: { waves: [{ count: 1, successThreshold: 100 }, { percent: 100, successThreshold: 95 }] } }, /plan\.waves\[1\] is the last wave: a successThreshold gates the next wave and none follows; to stop a failing last wave, use abort rules/);
    bad({ plan: { waves: [{ successThreshold: 50 }] } }, /plan\.waves\[0\] is the last wave/);
    bad({ plan: { waves: [{ count: 1 }, { requireApproval: true }] } }, /plan\.waves\[1\] is the last wave: requireApproval holds the next wave and none follows/);
    assert.equal(parseJobRequest({ artifact: 'fw@2.0.0', targets: { devices: ['d1'] }, plan: { waves: [{ count: 1, successThreshold: 100, requireApproval: true }, { percent: 100, successThreshold: 0, requireApproval: false }] } }, now).spec.plan.waves.length, 2, 'a zero threshold and no approval on the last wave are the defaults, accepted');
    bad({ plan: { maxPerMinute: 0 } }, /maxPerMinute must be a positive integer/);
    bad({ plan: { maxInFlight: 1.5 } }, /maxInFlight must be a positive integer/);
    bad({ plan: { maxPerMinute: 5, rampUp: { initialPerMinute: 10, factor: 2 } } }, /initialPerMinute must not exceed/);
    bad({ abort: { rules: [{ type: 'FAILED', thresholdPercent: 0 }] } }, /thresholdPercent must be a number above 0/);
    bad({ abort: { rules: [{ type: 'OOPS', thresholdPercent: 5 }] } }, /type must be FAILED, TIMED_OUT, REJECTED or ANY/);
    bad({ retries: { limit: 11 } }, /retries\.limit must be an integer from 0 to 10/);
    bad({ timeouts: { stepSeconds: -1 } }, /timeouts\.stepSeconds must be/);
    bad({ plan: { startAt: 'tomorrow' } }, /startAt must be an ISO 8601 time/);
    bad({ plan: { windows: [] } }, /plan\.windows must be an array of 1 to 20 windows/);
    bad({ plan: { windows: [{ start: '24:00', minutes: 0, days: ['monday'], colour: 1 }] } }, /unknown field "plan\.windows\[0\]\.colour".*plan\.windows\[0\]\.start must be a time of day "HH:MM".*plan\.windows\[0\]\.minutes must be a whole number from 1 to 1440.*plan\.windows\[0\]\.days must be a non-empty list of sun, mon/);
    bad({ plan: { windows: [{ start: '02:00', minutes: 60 }], timeZone: 'Mars/Olympus' } }, /plan\.timeZone must be an IANA time zone/);
    bad({ plan: { timeZone: 'Europe/Madrid' } }, /plan\.timeZone is the time zone of plan\.windows: give the windows too/);
    bad({ colour: 'red' }, /unknown field "colour"/);
    // misspelt or misplaced inside a rule or the ramp-up: refused, not dropped (minfinished would abort after 1 device)
    bad({ abort: { rules: [{ type: 'FAILED', thresholdPercent: 5, minfinished: 20, rollback: true }] } }, /unknown field "abort\.rules\[0\]\.minfinished" \(type, thresholdPercent, minFinished\).*unknown field "abort\.rules\[0\]\.rollback"/);
    bad({ plan: { rampUp: { initialPerMinute: 5, factor: 2, maxPerMinute: 10 } } }, /unknown field "plan\.rampUp\.maxPerMinute" \(initialPerMinute, factor\)/);
    assert.throws(
      () => parseJobRequest({ artifact: 7, targets: {}, retries: { limit: -1 } }, now),
      (e: unknown) => e instanceof UpdraftError && /artifact must be a string.*target set is empty.*retries\.limit/.test(e.message),
    );
    // a target given and refused is said as what it is, not also as an empty set (QA: the new
    // rollout form showed "the target set is empty" beside the query's own error)
    for (const [targets, said] of [
      [{ query: 'tags = ' }, /^targets\.query: invalid query at position \d+/],
      [{ devices: ['bad id!'] }, /^"bad id!" is not a valid device id$/],
      [{ groups: 'lab' }, /^targets\.groups must be an array of group names$/],
    ] as const) {
      assert.throws(
        () => parseJobRequest({ artifact: 'fw@2.0.0', targets }, now),
        (e: unknown) => e instanceof UpdraftError && said.test(e.message) && !/target set is empty/.test(e.message),
        `${JSON.stringify(targets)}: refused for what it is, once`,
      );
    }
    assert.throws(() => parseJobRequest({ artifact: 'fw@2.0.0', targets: { devices: [] } }, now), /the target set is empty: give targets\.devices/, 'an empty list is still an empty set');
  });
});
