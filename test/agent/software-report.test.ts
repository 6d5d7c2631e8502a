/**
 * The agent's re-report of a finished job (software-report.ts, finishedReport): `jobVersion`
 * names what a successful job installed only when the device moved on to a later job's build,
 * which runs now; a device that runs another build for any other reason (its bootloader fell
 * back, a re-flash) reports what runs alone (review, 2026-12-06).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FinishedJob } from '../../src/agent/agent-state.ts';
import { finishedReport } from '../../src/agent/software-report.ts';

const at = '2026-12-06T00:00:00.000Z';
const a: FinishedJob = { jobId: 'A', status: 'SUCCESS', installed: '2.0.0', finishedAt: at };
const b: FinishedJob = { jobId: 'B', status: 'SUCCESS', installed: '3.0.0', finishedAt: at };
const running = (version: string) => ({ name: 'fw', version });

describe('finishedReport', () => {
  it('names the version a job installed when a later job installed what runs', () => {
    const r = finishedReport(running('3.0.0'), a, [a, b]);
    assert.equal(r.version, '3.0.0');
    assert.equal(r.jobVersion, '2.0.0');
    assert.equal(r.status, 'SUCCESS');
    assert.equal(r.jobId, 'A');
  });

  it('sends it null when the job installed what runs', () => {
    assert.equal(finishedReport(running('2.0.0'), a, [a]).jobVersion, null);
  });

  it('sends it null when another build runs that no later job installed (a fallback, a re-flash)', () => {
    assert.equal(finishedReport(running('1.0.0'), a, [a, b]).jobVersion, null);
    // a later job that failed installed nothing
    assert.equal(finishedReport(running('3.0.0'), a, [a, { jobId: 'B', status: 'FAILURE', error: 'x', finishedAt: at }]).jobVersion, null);
    // a job before this one does not count
    assert.equal(finishedReport(running('3.0.0'), a, [b, a]).jobVersion, null);
  });

  it('sends it null for a FAILURE and for an entry saved without what it installed (an older agent)', () => {
    assert.equal(finishedReport(running('3.0.0'), { jobId: 'A', status: 'FAILURE', error: 'x', finishedAt: at }, [a, b]).jobVersion, null);
    const old: FinishedJob = { jobId: 'A', status: 'SUCCESS', finishedAt: at };
    assert.equal(finishedReport(running('3.0.0'), old, [old, b]).jobVersion, null);
  });
});
